"""A small Llama by hand: save it in the Hugging Face format, load it back, fine-tune it on
pydoc_data/topics.py (ships with Python; no download) with AdamW, print per-example gradient
norms of a batch and a sample generated with the KV cache.

The code lives in fnnet/demos/llama_finetune.py. Needs safetensors: pip install -e ".[hf]".

    python examples/llama_finetune.py                      # 1000 steps: losses, norms, a sample
    python examples/llama_finetune.py --seconds 120        # a fixed time budget
    python examples/llama_finetune.py --out my_llama       # + the fine-tuned checkpoint (HF format)
    python examples/llama_finetune.py --top-k 5 --temperature 1.0
    python examples/llama_finetune.py --quick              # a seconds-long smoke run
"""

from fnnet.demos.llama_finetune import main

if __name__ == "__main__":
    raise SystemExit(main())
