"""The PruMUX pipeline as stages: warm-up -> mux fine-tune -> prune -> post-pruning fine-tune.

Each stage is a function `run_<stage>(settings, inputs) -> artifact directory`; `pipeline`
composes them for one (N, s). The stage graph (`plan`) is torch-free so that `sweep --dry-run`
starts fast; the stage functions import torch.
"""
