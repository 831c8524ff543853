"""The launcher: `paretune train --nproc N` starts N local training processes and waits for them.

`launch` starts the processes (torch's own launcher) and reports their errors once; `worker` is
what each of them runs. The rest of multi-process training lives with its layer: the config
section in `config/distributed.py`, the accelerate set-up in `engine/strategy.py`, moving weights,
optimizer and random state between processes in `engine/sharding.py` (docs/architecture.md).
"""
