"""Third-party progress bars silenced where judgekit loads a model.

transformers draws a "Loading weights" bar on stderr for every `from_pretrained`; in
`judgekit judge` it lands in the middle of the verdict, and in a notebook it is stored in the
cell's output. The bar is turned off for the load only, and the caller's setting (transformers'
and huggingface_hub's, which transformers switches together) is restored afterwards, so a user
who wants bars elsewhere keeps them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_model_loading() -> Iterator[None]:
    """No transformers / huggingface_hub progress bar inside the block (loading or saving)."""
    from huggingface_hub import utils as hub
    from transformers.utils import logging as hf_logging

    bars_on = hf_logging.is_progress_bar_enabled()
    hub_off = hub.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars_on:
            hf_logging.enable_progress_bar()
        if hub_off:
            hub.disable_progress_bars()
        else:
            hub.enable_progress_bars()
