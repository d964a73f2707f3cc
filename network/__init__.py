"""The network flow: import a trained network, quantise and map it onto tiles, run it
through the analog model and the bit-true periphery, study its accuracy over time.

The numpy parts obey the rule of ``neurophase.models`` (no Amaranth, no cocotb); the JAX
training lives in :mod:`neurophase.network.train` and :mod:`neurophase.network.hwa`
(hardware-aware fine-tuning) and is imported only by the commands that train.
"""
