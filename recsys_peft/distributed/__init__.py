"""Pretraining across processes with TorchRec's DistributedModelParallel (run under torchrun)."""
