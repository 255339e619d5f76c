"""The XOR recipe: 2-3-1 ReLU/sigmoid network, hand-written backprop, SGD 0.1, 10,000 epochs.

The code lives in fnnet/demos/xor.py (so `fnnet xor` runs the same thing);
read it there. Try:

    python examples/xor.py                  # the classic setup, one seed
    python examples/xor.py --seeds 100      # how often does it solve XOR? (~half)
    python examples/xor.py --activation tanh --hidden 8 --seeds 100   # reliable
"""

from fnnet.demos.xor import main

if __name__ == "__main__":
    raise SystemExit(main())
