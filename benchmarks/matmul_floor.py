"""The floor under case 2: the 8 matmuls of one 784-512-512-10 SGD step, alone, in one jit.

Run: python benchmarks/matmul_floor.py  (see NOTES.md section "MLP vs matmul peak").
"""
import jax, jax.numpy as jnp, time, numpy as np
k = jax.random.key(0)
B=256
x = jax.random.normal(k,(B,784)); w1=jax.random.normal(k,(784,512)); w2=jax.random.normal(k,(512,512)); w3=jax.random.normal(k,(512,10))
h1=jax.random.normal(k,(B,512)); h2=jax.random.normal(k,(B,512)); d3=jax.random.normal(k,(B,10)); d2=jax.random.normal(k,(B,512)); d1=jax.random.normal(k,(B,512))
@jax.jit
def mms(x,w1,w2,w3,h1,h2,d3,d2,d1):
    a = x@w1; b = h1@w2; c = h2@w3         # fwd
    g3 = h2.T@d3; e2 = d3@w3.T              # bwd layer 3
    g2 = h1.T@d2; e1 = d2@w2.T              # bwd layer 2
    g1 = x.T@d1                             # bwd layer 1
    return a,b,c,g3,e2,g2,e1,g1
args=(x,w1,w2,w3,h1,h2,d3,d2,d1)
jax.block_until_ready(mms(*args))
ts=[]
for r in range(200):
    t=time.perf_counter(); jax.block_until_ready(mms(*args)); ts.append(time.perf_counter()-t)
flops = 2*B*(784*512+512*512+512*10)*3 - 2*B*784*512
print("8 matmuls alone: %.3f ms, %.0f GFLOP/s" % (np.median(ts)*1e3, flops/np.median(ts)/1e9))
a=jax.random.normal(k,(1024,1024)); f=jax.jit(lambda a:a@a); f(a).block_until_ready()
ts=[]
for r in range(50):
    t=time.perf_counter(); f(a).block_until_ready(); ts.append(time.perf_counter()-t)
print("1024 peak %.0f GFLOP/s" % (2*1024**3/np.median(ts)/1e9))
