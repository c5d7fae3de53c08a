"""A tiny hand-written Japanese corpus and its statistics, shared by the unit tests.

Documents, in order: 0 富士山, 1 梅雨, 2 東京タワー, 3 将棋, 4 桜.
"""

from __future__ import annotations

import pytest

from deployments.lexical.stats import LexicalStats

DOCUMENTS = (
    "富士山\n富士山は静岡県と山梨県にまたがる活火山である。標高は3776メートルで、日本最高峰の山である。",
    "梅雨\n梅雨は、北海道と小笠原諸島を除く日本で見られる雨の多い期間である。例年5月から7月にかけて続く。",
    "東京タワー\n東京タワーは東京都港区にある電波塔である。1958年に完成し、高さは333メートルである。",
    "将棋\n将棋は二人で行うボードゲームである。駒を動かして相手の玉将を詰ませると勝ちになる。",
    "桜\n桜はバラ科の落葉樹である。日本では春に花見が行われ、多くの人が桜の花を楽しむ。",
)


@pytest.fixture(scope="session")
def documents() -> tuple[str, ...]:
    return DOCUMENTS


@pytest.fixture(scope="session")
def stats() -> LexicalStats:
    return LexicalStats.fit(DOCUMENTS)
