"""Verdicts of one sample, as the abort watch sees items: one that succeeded or one whose call
failed with a named error class."""

from __future__ import annotations

from judgekit.schema import Judgement, SampleStatus, Verdict


def one_sample_verdict(kind: str | None) -> Verdict:
    """An item whose one sample succeeded (None) or failed with the error class `kind`."""
    if kind is None:
        sample = Judgement(sample_index=0, status=SampleStatus.OK, permutation=[0, 1],
                           scores=[9.0, 2.0])
        return Verdict(n_responses=2, scores=[9.0, 2.0], best=0, valid_samples=1,
                       samples=[sample])
    sample = Judgement(sample_index=0, status=SampleStatus.API_ERROR, permutation=[0, 1],
                       error=f"{kind}: boom")
    return Verdict(n_responses=2, scores=[None, None], invalid_samples=1, samples=[sample],
                   error=f"no valid sample (api_error): {kind}: boom")
