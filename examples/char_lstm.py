"""Character-level LSTM on the standard library's own docs (pydoc_data/topics.py, no download).

The code lives in fnnet/demos/char_lstm.py. Every gradient, backpropagation through
time included, is hand-written.

    python examples/char_lstm.py                        # 3000 steps: losses, bits/char, a sample
    python examples/char_lstm.py --seconds 150          # a fixed time budget
    python examples/char_lstm.py --method autodiff      # jax.grad's gradients: the same losses
    python examples/char_lstm.py --plot char_lstm.png   # + loss curves
    python examples/char_lstm.py --quick                # a seconds-long smoke run
"""

from fnnet.demos.char_lstm import main

if __name__ == "__main__":
    raise SystemExit(main())
