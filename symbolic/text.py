"""Bilingual text: a sentence in English and Chinese, as transcripts and notes carry it.

Its own module so that op families can write their transcript notes beside their lowering
without importing the transcript machinery."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Text:
    """A sentence in English and (optionally) Chinese."""

    en: str
    zh: str = ""

    def __call__(self, lang: str) -> str:
        return self.zh if lang == "zh" and self.zh else self.en


def tr(en: str, zh: str = "") -> Text:
    return Text(en, zh)
