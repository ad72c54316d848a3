"""Model families built on TorchRec embedding collections."""
