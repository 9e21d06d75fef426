"""Danmaku-like JSON messages for the benchmarks (docs/dispatch.md, docs/benchmarks.md).

Live-stream comments as a business backend would push them: a command name, the
sender's id and nickname, a short comment (Chinese, emoji, "666", laughter, mixed
with a few long sentences), colour, mode and a timestamp, about 100 bytes of compact
JSON each. Nicknames and comments are drawn from fixed vocabularies with a skewed
(Zipf-like) distribution, as on a real stream where a few phrases repeat a lot.
"""

from __future__ import annotations

import json
import random

PHRASES = [
    "哈哈哈哈哈哈",
    "666666",
    "awsl",
    "前方高能",
    "来了来了",
    "好耶！",
    "？？？",
    "下次一定",
    "泪目",
    "主播好厉害",
    "这也太强了吧",
    "笑死我了",
    "hhhhhhhhh",
    "第一次看直播，好紧张",
    "打卡 day 37",
    "gg",
    "nb",
    "太可爱了吧😭",
    "弹幕护体",
    "上车上车🚗",
    "这波操作我给满分",
    "233333",
    "晚上好～",
    "主播今天几点下播？",
    "有人一起吗",
    "前排围观",
    "awsl awsl awsl",
    "我宣布这是今年最好看的一场",
    "(╯°□°）╯︵ ┻━┻",
    "LOL",
    "good game well played",
    "再来一把！",
]
NICKS = [
    "小明",
    "阿狸",
    "kiki_酱",
    "夜猫子",
    "momo",
    "路人甲",
    "星河",
    "一只咸鱼",
    "Tom",
    "青柠",
    "饭团",
    "bilibili_user",
    "不吃香菜",
    "北京彭于晏",
    "奶茶三分糖",
    "sleepy",
]
COLORS = [16777215, 16777215, 16777215, 16646914, 65532, 16738408, 6737151]


def zipf_choice(rng: random.Random, items: list[str]) -> str:
    # Weights 1/(rank+1): a few items dominate, the tail still shows up.
    return rng.choices(items, weights=[1 / (i + 1) for i in range(len(items))])[0]


class Danmaku:
    """A reproducible stream of danmaku-like payloads (dicts, or compact JSON bytes)."""

    def __init__(self, seed: int = 1, room: str = "live-1001") -> None:
        self.rng = random.Random(seed)
        self.room = room
        self.serial = 0

    def next_dict(self, t: float | None = None) -> dict[str, object]:
        rng = self.rng
        self.serial += 1
        message: dict[str, object] = {
            "cmd": "DANMU_MSG",
            "uid": rng.randrange(10_000_000, 99_999_999),
            "uname": zipf_choice(rng, NICKS),
            "text": zipf_choice(rng, PHRASES),
            "color": rng.choice(COLORS),
            "mode": 1,
            "n": self.serial,
        }
        if t is not None:
            message["t"] = round(t, 6)
        return message

    def next_json(self, t: float | None = None) -> bytes:
        return json.dumps(self.next_dict(t), ensure_ascii=False, separators=(",", ":")).encode()
