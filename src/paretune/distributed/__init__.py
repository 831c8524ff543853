"""Training on several processes, GPUs or machines, on accelerate and torch.distributed.

`settings` is the config section, `launch` starts the processes (`paretune train --nproc N`),
`strategy` turns the section into an accelerate setup, `state` moves weights, optimizer state and
random state between processes and disk, whether the model is replicated or sharded.
"""
