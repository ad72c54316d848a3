"""recsys-peft: per-segment parameter-efficient fine-tuning of TorchRec recommenders."""

import logging

__version__ = "0.1.0"

# Importing TorchRec logs a warning from torch.fx about is_fx_tracing on every run. It is
# unrelated to this package's work, so it is kept out of the console.
logging.getLogger("torch.fx._symbolic_trace").setLevel(logging.ERROR)
