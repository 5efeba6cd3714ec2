"""Checking output grammars with xgrammar against the embedded model's tokenizer (the tokenizer
only, no weights): does a grammar accept exactly a text, and what does it emit when walked at
random. The same helpers as in tests/prompts/test_template_grm.py, shared for other grammar tests."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest


def grammar_compiler() -> Any:
    """(xgrammar, tokenizer, tokenizer info, compiler); skips the test when xgrammar,
    transformers or the embedded model are not installed."""
    xgr = pytest.importorskip("xgrammar")
    transformers = pytest.importorskip("transformers")
    try:
        from judgekit.embedded import embedded_model_dir

        model_dir = embedded_model_dir()
    except Exception as exc:  # the embedded model is an optional extra
        pytest.skip(f"embedded model unavailable: {exc}")
    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    return xgr, tok, info, xgr.GrammarCompiler(info)


def accepts(compiler: Any, grammar: str, text: str) -> bool:
    """Whether the grammar accepts exactly `text`: all of it, and then the end of output."""
    xgr, _, info, comp = compiler
    matcher = xgr.GrammarMatcher(comp.compile_grammar(grammar))
    if not matcher.accept_string(text):
        return False
    return any(matcher.accept_token(t) for t in info.stop_token_ids) and matcher.is_terminated()


def random_walk(compiler: Any, grammar: str, seed: int, max_steps: int = 3000) -> str:
    """A string drawn from the grammar by taking a random allowed token at every step."""
    import numpy as np

    xgr, tok, info, comp = compiler
    matcher = xgr.GrammarMatcher(comp.compile_grammar(grammar))
    mask = xgr.allocate_token_bitmask(1, info.vocab_size)
    rng = random.Random(seed)
    ids: list[int] = []
    for _ in range(max_steps):
        matcher.fill_next_token_bitmask(mask)
        bits = np.unpackbits(mask[0].numpy().view(np.uint8), bitorder="little")[: info.vocab_size]
        token = rng.choice(np.flatnonzero(bits).tolist())
        assert matcher.accept_token(token)
        if token in info.stop_token_ids:
            break
        ids.append(token)
    assert matcher.is_terminated(), "the walk did not reach the end of the grammar"
    text: str = tok.decode(ids)
    return text
