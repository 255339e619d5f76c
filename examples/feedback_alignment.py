"""Feedback alignment vs backprop on the bundled 8x8 digits: test accuracy curves and
the angle between each layer's update and the true gradient over training.

The code lives in fnnet/demos/feedback_alignment.py.

    python examples/feedback_alignment.py                  # 30 epochs each
    python examples/feedback_alignment.py --plot fa.png    # + accuracy and angle curves
    python examples/feedback_alignment.py --quick          # a 3-epoch smoke run
"""

from fnnet.demos.feedback_alignment import main

if __name__ == "__main__":
    raise SystemExit(main())
