"""A small character GPT on pydoc_data/topics.py (ships with Python; no download), every
gradient by hand: causal multi-head attention, pre-LayerNorm blocks, tied embeddings, AdamW
with warmup and cosine decay, gradient clipping.

The code lives in fnnet/demos/char_gpt.py.

    python examples/char_gpt.py                        # 2000 steps, losses + sample
    python examples/char_gpt.py --seconds 600          # a fixed time budget
    python examples/char_gpt.py --plot gpt.png         # + loss curves (bits/char)
    python examples/char_gpt.py --quick                # a seconds-long smoke run
"""

from fnnet.demos.char_gpt import main

if __name__ == "__main__":
    raise SystemExit(main())
