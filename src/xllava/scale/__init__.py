"""Scale-out: running the pipeline under torchrun / accelerate launch, and planning large runs."""
