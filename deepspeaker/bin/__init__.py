"""One thin entry point per stage: ``python -m deepspeaker.bin.<name> --help``."""
