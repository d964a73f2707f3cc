"""The embedded default network and the settings that trained it.

``default_cnn.onnx`` next to this module is a small CNN (see :mod:`neurophase.network.train`
for the architecture) trained on the digits of :func:`neurophase.network.data.digits` with
the constants below. It is produced, bit for bit from these settings on a given machine, by::

    neurophase model train --out network/default_cnn.onnx

(the command's default ``--out`` is ``out/model/default_cnn.onnx`` so that a plain run never
overwrites the shipped file). This module imports nothing heavy (no JAX, not even numpy): it
only names the file and the settings, so the numpy parts of the network flow find the default
without JAX.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "DEFAULT_MODEL_PATH", "DEFAULT_SEED", "DEFAULT_EPOCHS", "BATCH_SIZE", "LEARNING_RATE",
    "WEIGHT_DECAY", "BN_MOMENTUM", "BN_EPSILON", "SHIFT_AUGMENT", "CONV1_CHANNELS", "CONV2_CHANNELS",
    "OPSET", "DEFAULT_HWA_MODEL_PATH", "HWA_SEED", "HWA_EPOCHS", "HWA_LEARNING_RATE", "HWA_TIME_RANGE_S",
]

#: The shipped ONNX file of the default network.
DEFAULT_MODEL_PATH = Path(__file__).with_name("default_cnn.onnx")

#: Seed of the weight initialisation, the minibatch order and the augmentation.
DEFAULT_SEED = 0
#: Passes over the training set.
DEFAULT_EPOCHS = 30
#: Examples per minibatch (the last incomplete batch of an epoch is dropped).
BATCH_SIZE = 64
#: Peak learning rate of AdamW (cosine decay to zero over the run, after a short warm-up).
LEARNING_RATE = 3e-3
#: Decoupled weight decay of AdamW (on the weight tensors only).
WEIGHT_DECAY = 1e-4
#: BatchNorm running averages: ``running = momentum * running + (1 - momentum) * batch``.
BN_MOMENTUM = 0.9
#: BatchNorm epsilon (also written to the ONNX BatchNormalization nodes).
BN_EPSILON = 1e-5
#: Random shifts of each training image by up to this many pixels per axis (zero fill).
SHIFT_AUGMENT = 1
#: Output channels of the first and second convolution.
CONV1_CHANNELS = 16
CONV2_CHANNELS = 32
#: ONNX operator set of the exported file.
OPSET = 17

# -- hardware-aware fine-tuning (neurophase model train --hwa) ------------------------------
#: The shipped hardware-aware fine-tuned default network (from ``default_cnn.onnx``).
DEFAULT_HWA_MODEL_PATH = Path(__file__).with_name("default_cnn_hwa.onnx")
#: Seed of the noise draws, minibatch order and augmentation of the fine-tuning.
HWA_SEED = 0
#: Passes over the training set of the fine-tuning.
HWA_EPOCHS = 12
#: Peak AdamW learning rate of the fine-tuning (warm-up, then cosine decay to zero).
HWA_LEARNING_RATE = 1e-3
#: Range of the time since programming drawn (log-uniformly) per minibatch: 1 s to 1 year.
HWA_TIME_RANGE_S = (1.0, 365 * 86400.0)
