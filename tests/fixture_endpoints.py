"""An OpenAI-compatible teacher and judge that answer from a fixture, not from the embedded world.

Both are responders for the project's generic test server (xllava.datagen.openai_server): the
content of every reply is built from the request alone (its text, and a hash of text and images
where a choice has to be made), so the same request always gets the same reply, whatever the image
shows. They stand in for a real vision teacher (GPT-4V) and a real judge (GPT-4) in tests that must
not depend on the world's scene graphs.

- `FixtureTeacher` answers the mvif generator's prompts (xllava.datagen.prompts): it reads the task id
  and the target languages from the prompt's two fixed lines and the main objects from its object
  list (name, attributes, box), and writes the JSON answer of xllava.datagen.schema in en, ko and zh,
  made to pass xllava.datagen.quality (script of each language, turn counts, no duplicate turns).
  Objects it has no Korean or Chinese word for are called "the thing at <position>" there.
- `FixtureJudge` answers the LLaVA-Bench review prompt (en and ko: first line "s1 s2"; the reference
  scores 10, the candidate 1 + 9 x the token F1 of its answer against the reference) and the
  pairwise preference prompt (a verdict of VERDICTS: the answer in the question's language that
  shares more with the question and says more wins; equal scores tie, so both orders agree).

    with fixture_endpoints() as (teacher_url, judge_url):
        generate(cfg, image_root, out_dir, teacher_url, progress=False)   # cfg.teacher.model = TEACHER_MODEL
        review(items, answers, make_client(judge_cfg, judge_url), ...)    # judge_cfg.model = JUDGE_MODEL
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from xllava.datagen.openai_server import (
    ChatRequest,
    FaultConfig,
    Reply,
    ResponderError,
    ServerThread,
    create_app,
)

TEACHER_MODEL = "fixture-teacher"
JUDGE_MODEL = "fixture-judge"
LANGUAGES = ("en", "ko", "zh")

# ---------------------------------------------------------------- words

# noun -> (Korean, Chinese, Chinese measure word)
NOUNS: dict[str, tuple[str, str, str]] = {
    "ball": ("공", "球", "个"), "tree": ("나무", "树", "棵"), "house": ("집", "房子", "座"),
    "sun": ("해", "太阳", "个"), "car": ("자동차", "汽车", "辆"), "dog": ("개", "狗", "只"),
    "cat": ("고양이", "猫", "只"), "box": ("상자", "盒子", "个"), "cup": ("컵", "杯子", "个"),
    "table": ("탁자", "桌子", "张"), "chair": ("의자", "椅子", "把"), "person": ("사람", "人", "个"),
    "man": ("남자", "男人", "个"), "woman": ("여자", "女人", "个"), "kite": ("연", "风筝", "只"),
    "bird": ("새", "鸟", "只"), "flower": ("꽃", "花", "朵"), "cloud": ("구름", "云", "朵"),
    "window": ("창문", "窗户", "扇"), "door": ("문", "门", "扇"), "bench": ("벤치", "长椅", "张"),
    "lamp": ("램프", "台灯", "盏"), "book": ("책", "书", "本"), "bicycle": ("자전거", "自行车", "辆"),
    "boat": ("배", "船", "条"), "building": ("건물", "大楼", "栋"), "circle": ("원", "圆", "个"),
    "square": ("사각형", "正方形", "个"), "triangle": ("삼각형", "三角形", "个"), "star": ("별", "星星", "颗"),
    "moon": ("달", "月亮", "个"), "apple": ("사과", "苹果", "个"), "umbrella": ("우산", "雨伞", "把"),
    "sign": ("표지판", "标志", "块"), "fence": ("울타리", "篱笆", "道"), "plate": ("접시", "盘子", "个"),
    "shirt": ("셔츠", "衬衫", "件"), "hat": ("모자", "帽子", "顶"), "bag": ("가방", "包", "个"),
    "bottle": ("병", "瓶子", "个"), "clock": ("시계", "钟", "个"), "horse": ("말", "马", "匹"),
}
# adjective -> (Korean before a noun, Chinese before a noun, English colour word, Korean colour, Chinese colour)
COLOURS: dict[str, tuple[str, str, str, str]] = {
    "red": ("빨간", "红色的", "빨간색", "红色"), "blue": ("파란", "蓝色的", "파란색", "蓝色"),
    "green": ("초록", "绿色的", "초록색", "绿色"), "yellow": ("노란", "黄色的", "노란색", "黄色"),
    "white": ("하얀", "白色的", "하얀색", "白色"), "black": ("검은", "黑色的", "검은색", "黑色"),
    "orange": ("주황색", "橙色的", "주황색", "橙色"), "purple": ("보라색", "紫色的", "보라색", "紫色"),
    "brown": ("갈색", "棕色的", "갈색", "棕色"), "gray": ("회색", "灰色的", "회색", "灰色"),
    "grey": ("회색", "灰色的", "회색", "灰色"), "pink": ("분홍색", "粉色的", "분홍색", "粉色"),
}
SIZE_WORDS = {"small": ("작은", "小"), "big": ("큰", "大"), "large": ("큰", "大"), "tall": ("키 큰", "高高的")}

# (vertical, horizontal) -> (English phrase, Korean place, Chinese place)
PLACES: dict[tuple[str, str], tuple[str, str, str]] = {
    ("top", "left"): ("in the top left corner", "왼쪽 위", "左上角"),
    ("top", "middle"): ("at the top", "위쪽 가운데", "上方"),
    ("top", "right"): ("in the top right corner", "오른쪽 위", "右上角"),
    ("middle", "left"): ("on the left", "왼쪽", "左边"),
    ("middle", "middle"): ("in the centre", "가운데", "中间"),
    ("middle", "right"): ("on the right", "오른쪽", "右边"),
    ("bottom", "left"): ("in the bottom left corner", "왼쪽 아래", "左下角"),
    ("bottom", "middle"): ("at the bottom", "아래쪽 가운데", "下方"),
    ("bottom", "right"): ("in the bottom right corner", "오른쪽 아래", "右下角"),
}
HORIZONTAL = {"left": ("left", "왼쪽", "左边"), "middle": ("middle", "가운데", "中间"), "right": ("right", "오른쪽", "右边")}
# predicate -> (English, Korean side, Chinese side)
RELATIONS = {"left of": ("to the left of", "왼쪽", "左边"), "right of": ("to the right of", "오른쪽", "右边"),
             "above": ("above", "위", "上方"), "below": ("below", "아래", "下方")}
# size class -> (English, Korean sentence end, Chinese)
SIZES = {"large": ("large", "큰 편이에요", "很大"), "medium": ("medium-sized", "중간 크기예요", "中等大小"),
         "small": ("small", "작은 편이에요", "很小")}

TIMES = (("morning", "아침", "早晨"), ("midday", "한낮", "中午"), ("late afternoon", "늦은 오후", "下午晚些时候"),
         ("early evening", "이른 저녁", "傍晚"))
WEATHER = (("clear", "맑아 보여요", "很晴朗"), ("mild and bright", "포근하고 밝아 보여요", "温和明亮"),
           ("a little overcast", "조금 흐려 보여요", "有点阴"))
LIGHT = (("soft and warm", "부드럽고 따뜻해요", "柔和而温暖"), ("bright and clear", "밝고 선명해요", "明亮而清晰"),
         ("cool and even", "차분하고 고르게 퍼져요", "清冷而均匀"))
MOODS = (("calm and tidy", "차분하고 깔끔한", "平静整洁"), ("cheerful and playful", "밝고 경쾌한", "欢快活泼"),
         ("quiet and simple", "조용하고 단순한", "安静简朴"))
FEELINGS = (("relaxed", "편안한", "放松"), ("curious", "궁금한", "好奇"), ("cheerful", "즐거운", "愉快"))

# The one-word instruction, as the prompt states it (read from the prompt; these when it does not).
SHORT_ANSWER_DEFAULT = {"en": "Answer with a single word or number.", "ko": "한 단어나 숫자로 답하세요.",
                        "zh": "请用一个词或数字回答。"}


def _batchim(word: str) -> bool | None:
    """Whether a Korean word ends in a consonant; None when its last letter is not a Hangul syllable."""
    last = word.rstrip()[-1:] if word.strip() else ""
    if not ("\uac00" <= last <= "\ud7a3"):
        return None
    return (ord(last) - 0xAC00) % 28 != 0


def _josa(word: str, after_consonant: str, after_vowel: str) -> str:
    b = _batchim(word)
    return word + (f"{after_consonant}({after_vowel})" if b is None else after_consonant if b else after_vowel)


def _topic(w: str) -> str:
    return _josa(w, "은", "는")


def _subject(w: str) -> str:
    return _josa(w, "이", "가")


def _object(w: str) -> str:
    return _josa(w, "을", "를")


def _is(w: str) -> str:  # the copula: 공이에요 / 나무예요
    return _josa(w, "이에요", "예요")


# ---------------------------------------------------------------- the prompt


@dataclass
class Thing:
    name: str  # as annotated ("red ball")
    attributes: tuple[str, ...]
    box: tuple[float, float, float, float]
    en: str = ""  # display names, made unique within the image
    ko: str = ""
    zh: str = ""
    measure: str = "个"

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)

    @property
    def size(self) -> str:
        return "large" if self.area >= 0.2 else "medium" if self.area >= 0.05 else "small"

    @property
    def horizontal(self) -> str:
        cx, _ = self.centre
        return "left" if cx < 0.34 else "right" if cx > 0.66 else "middle"

    @property
    def vertical(self) -> str:
        _, cy = self.centre
        return "top" if cy < 0.34 else "bottom" if cy > 0.66 else "middle"

    @property
    def place(self) -> tuple[str, str, str]:
        return PLACES[(self.vertical, self.horizontal)]

    @property
    def noun(self) -> str:
        return self.name.lower().split()[-1] if self.name.split() else ""

    def colour(self) -> str | None:
        words = self.name.lower().split()[:-1] + [a.lower() for a in self.attributes]
        return next((w for w in words if w in COLOURS), None)


_TASK = re.compile(r"^Task type: .*\(id: ([\w-]+)\)\s*$", re.MULTILINE)
_LANGS = re.compile(r"^Target languages: (.+)$", re.MULTILINE)
_OBJECT = re.compile(r"^- (.+): \[(-?[\d.]+), (-?[\d.]+), (-?[\d.]+), (-?[\d.]+)\]\s*$")
_TURNS = re.compile(r"exactly (\d+) turns")


def _localise(things: list[Thing]) -> None:
    """Display names in every language; Korean and Chinese from the word lists (else "the thing at
    <place>"); names that repeat within the image get their place added."""
    counts: dict[str, int] = {}
    for t in things:
        counts[t.name.lower()] = counts.get(t.name.lower(), 0) + 1
    for t in things:
        words = t.name.lower().split()
        en_place, ko_place, zh_place = t.place
        known = bool(words) and words[-1] in NOUNS and all(w in COLOURS or w in SIZE_WORDS for w in words[:-1])
        if known:
            ko_noun, zh_noun, t.measure = NOUNS[words[-1]]
            ko_adj = [COLOURS[w][0] if w in COLOURS else SIZE_WORDS[w][0] for w in words[:-1]]
            zh_adj = [COLOURS[w][1] if w in COLOURS else SIZE_WORDS[w][1] for w in words[:-1]]
            t.ko, t.zh = " ".join([*ko_adj, ko_noun]), "".join([*zh_adj, zh_noun])
        else:
            t.ko, t.zh = f"{ko_place}에 있는 물건", f"{zh_place}的物体"
        t.en = t.name
        if counts[t.name.lower()] > 1:
            t.en = f"{t.name} {en_place}"
            if known:
                t.ko, t.zh = f"{ko_place}에 있는 {t.ko}", f"{zh_place}的{t.zh}"


@dataclass
class TeacherPrompt:
    task: str
    languages: list[str]
    things: list[Thing]
    turns: int
    short_answer: dict[str, str]
    digest: str


def read_prompt(request: ChatRequest) -> TeacherPrompt:
    text = request.text()
    task, langs = _TASK.search(text), _LANGS.search(text)
    if not task or not langs:
        raise ResponderError(400, "not an mvif prompt: no 'Task type: ... (id: TASK)' and "
                                  "'Target languages: ...' lines")
    languages = re.findall(r"([A-Za-z][\w-]*) \(", langs.group(1))
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if not languages or unknown:
        raise ResponderError(400, f"the fixture teacher writes {', '.join(LANGUAGES)} only, not {unknown or 'none'}")
    things: list[Thing] = []
    in_objects = False
    for line in text.splitlines():
        if line.startswith("Main objects"):
            in_objects = True
            continue
        if in_objects:
            m = _OBJECT.match(line)
            if not m:
                break
            label = m.group(1).strip()
            name, attributes = label, ()
            if label.endswith(")") and " (" in label:
                name, rest = label[:-1].split(" (", 1)
                attributes = tuple(a.strip() for a in rest.split(",") if a.strip())
            things.append(Thing(name.strip(), attributes, tuple(float(m.group(i)) for i in range(2, 6))))
    if not things:
        raise ResponderError(400, "the prompt lists no main objects")
    _localise(things)
    turns = _TURNS.search(text)
    short = {lang: (re.search(rf"\b{re.escape(lang)}: '([^']+)'", text) or [None, SHORT_ANSWER_DEFAULT[lang]])[1]
             for lang in languages}
    h = hashlib.sha256(text.encode())
    for image in request.images():
        h.update(hashlib.sha256(image).digest())
    return TeacherPrompt(task.group(1), languages, things, int(turns.group(1)) if turns else 8, short, h.hexdigest())


# ---------------------------------------------------------------- the teacher's answers


def _relation(a: Thing, b: Thing) -> str:
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = ax - bx, ay - by
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def _en_list(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


T = tuple[str, str, str]  # en, ko, zh


class FixtureTeacher:
    """The responder: an mvif answer in the requested languages, built from the prompt's object list."""

    model = TEACHER_MODEL

    def __call__(self, request: ChatRequest) -> Reply:
        p = read_prompt(request)
        build = {"object": self._object, "location": self._location, "atmosphere": self._atmosphere,
                 "conversation": self._conversation, "short_answer": self._short_answer}.get(p.task)
        if build is None:
            raise ResponderError(400, f"unknown task id {p.task!r}")
        answer = build(p)
        content = json.dumps(answer, ensure_ascii=False)
        prompt_tokens = len(request.text()) // 4 + 85 * len(request.images())
        return Reply(content, prompt_tokens=prompt_tokens, completion_tokens=max(1, len(content) // 3))

    # helpers

    @staticmethod
    def _pick(p: TeacherPrompt, options: tuple, salt: str):
        return options[int(hashlib.sha256(f"{p.digest}/{salt}".encode()).hexdigest(), 16) % len(options)]

    @staticmethod
    def _turn(p: TeacherPrompt, q: T, a: T) -> dict:
        index = {"en": 0, "ko": 1, "zh": 2}
        return {"question": {lang: q[index[lang]] for lang in p.languages},
                "answer": {lang: a[index[lang]] for lang in p.languages}}

    def _turns(self, p: TeacherPrompt, pairs: list[tuple[T, T] | None], limit: int) -> list[dict]:
        """The first `limit` pairs whose questions differ from the ones before (in every language)."""
        seen: set[str] = set()
        out = []
        for pair in pairs:
            if pair is None or len(out) >= limit:
                continue
            keys = {re.sub(r"[\W_]+", "", s.casefold()) for s in pair[0]}
            if keys & seen:
                continue
            seen |= keys
            out.append(self._turn(p, *pair))
        return out

    @staticmethod
    def _list(things: list[Thing]) -> T:
        en = _en_list([_a(t.en) for t in things])
        zh = "、".join(f"一{t.measure}{t.zh}" for t in things)
        return en, ", ".join(t.ko for t in things), zh

    @staticmethod
    def _where(t: Thing) -> T:
        en, ko, zh = t.place
        size_en, size_ko, size_zh = SIZES[t.size]
        return (f"The {t.en} is {en}, and it is {size_en}.", f"{_topic(t.ko)} {ko}에 있고 {size_ko}.",
                f"{t.zh}在{zh}，看起来{size_zh}。")

    @staticmethod
    def _relative(a: Thing, b: Thing) -> T:
        en, ko, zh = RELATIONS[_relation(a, b)]
        return f"The {a.en} is {en} the {b.en}.", f"{_topic(a.ko)} {b.ko}의 {ko}에 있어요.", f"{a.zh}在{b.zh}的{zh}。"

    # task types

    def _object(self, p: TeacherPrompt) -> dict:
        things = p.things
        first = max(things, key=lambda t: t.area)  # the prompt lists the largest first; ties keep that order
        second = next((t for t in things if t is not first), first)
        en_place, ko_place, zh_place = first.place
        size_en, size_ko, size_zh = SIZES[first.size]
        pct = max(1, round(first.area * 100))
        looks = f"{', '.join(first.attributes)} and {size_en}" if first.attributes else size_en
        en_list, ko_list, zh_list = self._list(things)
        pairs: list[tuple[T, T] | None] = [
            (("What is the biggest thing in the picture?", "사진에서 가장 큰 것은 무엇인가요?", "图中最大的东西是什么？"),
             (f"The biggest thing is the {first.en}, {en_place}.", f"가장 큰 것은 {ko_place}에 있는 {_is(first.ko)}.",
              f"最大的是{zh_place}的{first.zh}。")),
            ((f"What does the {first.en} look like?", f"{_topic(first.ko)} 어떻게 생겼나요?", f"{first.zh}是什么样子的？"),
             (f"The {first.en} is {looks}, and it takes up about {pct}% of the picture.",
              f"{_topic(first.ko)} {size_ko}. 사진의 약 {pct}%를 차지해요.",
              f"{first.zh}看起来{size_zh}，大约占画面的{pct}%。")),
            ((f"Where is the {second.en}, and how big is it?", f"{_topic(second.ko)} 어디에 있고 크기는 어떤가요?",
              f"{second.zh}在哪里？有多大？"), self._where(second)),
            (("What is in the image?", "이미지에 무엇이 있나요?", "图片里有什么？"),
             (f"There {'is' if len(things) == 1 else 'are'} {en_list} in the image.", f"{_subject(ko_list)} 있어요.",
              f"图片里有{zh_list}。")),
        ]
        return {"conversations": [{"turns": self._turns(p, pairs, 4)}]}

    def _location(self, p: TeacherPrompt) -> dict:
        things = p.things
        graph = [{"subject": a.name, "predicate": _relation(a, b), "object": b.name}
                 for a, b in zip(things, things[1:], strict=False)]
        listing = (
            "\n".join(f"{_cap(t.en)}: {t.place[0]}" for t in things),
            "\n".join(f"{t.ko}: {t.place[1]}" for t in things),
            "\n".join(f"{t.zh}：{t.place[2]}" for t in things),
        )
        pairs: list[tuple[T, T] | None] = [
            (("Where is each object in the image?", "이미지 속 각 물체는 어디에 있나요?", "图中每个物体分别在什么位置？"),
             listing)]
        for a, b in zip(things, things[1:], strict=False):
            pairs.append(((f"Where is the {a.en} relative to the {b.en}?", f"{_topic(a.ko)} {b.ko}에 비해 어디에 있나요?",
                           f"{a.zh}相对于{b.zh}在什么位置？"), self._relative(a, b)))
        return {"scene_graph": graph, "conversations": [{"turns": self._turns(p, pairs, 4)}]}

    def _atmosphere(self, p: TeacherPrompt) -> dict:
        things = p.things
        t0, t1, t2 = things[0], things[1 % len(things)], things[2 % len(things)]
        time_en, time_ko, time_zh = self._pick(p, TIMES, "time")
        w_en, w_ko, w_zh = self._pick(p, WEATHER, "weather")
        l_en, l_ko, l_zh = self._pick(p, LIGHT, "light")
        m_en, m_ko, m_zh = self._pick(p, MOODS, "mood")
        pairs: list[tuple[T, T] | None] = [
            (("What time of day does this scene suggest?", "이 장면은 하루 중 언제처럼 보이나요?",
              "这个场景看起来是一天中的什么时候？"),
             (f"It looks like {time_en}; the light falls evenly on the {t0.en}.",
              f"{time_ko}처럼 보여요. {t0.ko}에 빛이 고르게 비치고 있어요.", f"看起来像是{time_zh}，光线均匀地照在{t0.zh}上。")),
            (("What is the weather like?", "날씨는 어때 보이나요?", "天气看起来怎么样？"),
             (f"The weather looks {w_en}, and the {t1.en} is easy to see.",
              f"날씨는 {w_ko}. {_subject(t1.ko)} 잘 보여요.", f"天气看起来{w_zh}，{t1.zh}看得很清楚。")),
            (("How would you describe the light in the picture?", "사진 속 빛은 어떤 느낌인가요?",
              "画面中的光线给人什么感觉？"),
             (f"The light is {l_en}, and the colours of the {t2.en} stand out.",
              f"빛이 {l_ko}. {t2.ko}의 색이 뚜렷하게 드러나요.", f"光线{l_zh}，{t2.zh}的颜色显得很突出。")),
            (("What mood does the whole scene give?", "장면 전체의 분위기는 어떤가요?", "整个场景给人怎样的氛围？"),
             (f"The whole scene feels {m_en}; the {t0.en} draws the eye first.",
              f"전체적으로 {m_ko} 분위기예요. {_subject(t0.ko)} 가장 먼저 눈에 띄어요.",
              f"整个场景给人{m_zh}的感觉，{t0.zh}最先吸引人的目光。")),
        ]
        return {"conversations": [{"turns": self._turns(p, pairs, 4)}]}

    def _conversation(self, p: TeacherPrompt) -> dict:
        things = p.things
        k = len(things)
        first = max(things, key=lambda t: t.area)
        second = next((t for t in things if t is not first), first)
        last = things[-1] if things[-1] is not first else things[0]
        smallest = min(things, key=lambda t: t.area)
        en_list, ko_list, zh_list = self._list(things)
        size_en, size_ko, size_zh = SIZES[first.size]
        f_en, f_ko, f_zh = self._pick(p, FEELINGS, "feeling")
        m_en, m_ko, m_zh = self._pick(p, MOODS, "mood")
        time_en, time_ko, time_zh = self._pick(p, TIMES, "time")
        simple = k <= 3
        pairs: list[tuple[T, T] | None] = [
            (("How many main things can you see in the picture?", "사진에서 주요한 것이 몇 개 보이나요?",
              "图中能看到几样主要的东西？"),
             (f"I can see {k} main thing{'s' if k > 1 else ''}: {en_list}.", f"주요한 것이 {k}개 보여요. {_is(ko_list)}.",
              f"我能看到{k}样主要的东西：{zh_list}。")),
            ((f"Tell me about the {first.en}.", f"{first.ko}에 대해 알려 주세요.", f"说说{first.zh}吧。"),
             (f"The {first.en} is {size_en} and sits {first.place[0]}.",
              f"{_topic(first.ko)} {first.place[1]}에 있고 {size_ko}.", f"{first.zh}在{first.place[2]}，看起来{size_zh}。")),
            (("What catches your eye first?", "무엇이 가장 먼저 눈에 들어오나요?", "什么最先吸引你的目光？"),
             (f"The {first.en} catches my eye first, because it is the biggest thing.",
              f"가장 큰 {_subject(first.ko)} 먼저 눈에 들어와요.", f"最先吸引我的是{first.zh}，因为它最大。")),
            ((f"Where is the {second.en}?", f"{_topic(second.ko)} 어디에 있나요?", f"{second.zh}在哪里？"),
             self._where(second)),
            ((f"Where is the {second.en} compared with the {first.en}?",
              f"{_topic(second.ko)} {first.ko}에 비해 어디에 있나요?", f"{second.zh}和{first.zh}相比在什么位置？"),
             self._relative(second, first)) if k > 1 else None,
            (("How does the picture make you feel?", "이 사진을 보면 어떤 기분이 드나요?", "这张图给你什么感觉？"),
             (f"It makes me feel {f_en}; the {last.en} brings the picture to life.",
              f"{f_ko} 기분이 들어요. {_subject(last.ko)} 사진에 생기를 더해 줘요.",
              f"它让我感到{f_zh}，{last.zh}让画面更生动。")),
            (("Is the picture busy or simple?", "사진은 복잡한 편인가요, 단순한 편인가요?", "画面是复杂还是简单？"),
             (f"It is fairly {'simple' if simple else 'busy'}, with {k} main thing{'s' if k > 1 else ''}.",
              f"{'단순한' if simple else '꽤 복잡한'} 편이에요. 주요한 것이 {k}개 있어요.",
              f"画面比较{'简单' if simple else '丰富'}，有{k}样主要的东西。")),
            (("Which thing is the smallest?", "가장 작은 것은 무엇인가요?", "哪样东西最小？"),
             (f"The smallest is the {smallest.en}, {smallest.place[0]}.",
              f"가장 작은 것은 {smallest.place[1]}에 있는 {_is(smallest.ko)}.",
              f"最小的是{smallest.place[2]}的{smallest.zh}。")),
            (("What time of day does it seem to be?", "하루 중 언제쯤으로 보이나요?", "看起来是一天中的什么时候？"),
             (f"It seems to be {time_en}.", f"{time_ko}쯤으로 보여요.", f"看起来是{time_zh}。")),
            (("Would this be a nice place to spend some time?", "여기서 시간을 보내면 좋을까요?", "在这里待一会儿好吗？"),
             (f"Yes, it looks {m_en} and inviting.", f"네, {m_ko} 분위기라서 머물기 좋아 보여요.",
              f"是的，这里看起来{m_zh}，很适合待一会儿。")),
            (("What would you look at more closely?", "무엇을 더 가까이 보고 싶나요?", "你想走近看看什么？"),
             (f"I would take a closer look at the {last.en}.", f"{_object(last.ko)} 더 가까이 살펴보고 싶어요.",
              f"我想走近看看{last.zh}。")),
        ]
        turns = self._turns(p, pairs, p.turns)
        return {"conversations": [{"turns": turns}]}

    def _short_answer(self, p: TeacherPrompt) -> dict:
        things = p.things
        k = len(things)
        first, second, last = things[0], things[1 % k], things[-1]
        present = {t.noun for t in things}
        absent = self._pick(p, tuple(n for n in sorted(NOUNS) if n not in present), "absent")
        a_ko, a_zh, _ = NOUNS[absent]
        pairs: list[tuple[T, T] | None] = [
            (("How many main things are in the picture?", "사진에 주요한 것이 몇 개 있어요?", "图中有几样主要的东西？"),
             (str(k), str(k), str(k))),
            ((f"Is there {_a(first.en)}?", f"{_subject(first.ko)} 있어요?", f"图中有没有{first.zh}？"), ("yes", "네", "有")),
            ((f"Is there {_a(absent)}?", f"{_subject(a_ko)} 있어요?", f"图中有没有{a_zh}？"), ("no", "아니요", "没有")),
            ((f"Which side is the {first.en} on?", f"{_topic(first.ko)} 어느 쪽에 있어요?", f"{first.zh}在哪一边？"),
             HORIZONTAL[first.horizontal]),
            ((f"Is the {second.en} left or right of the {first.en}?",
              f"{_topic(second.ko)} {first.ko}의 왼쪽에 있어요, 오른쪽에 있어요?", f"{second.zh}在{first.zh}的左边还是右边？"),
             HORIZONTAL["left" if second.centre[0] < first.centre[0] else "right"]) if k > 1 else None,
            ((f"How big is the {last.en}?", f"{_topic(last.ko)} 얼마나 커요?", f"{last.zh}有多大？"),
             {"large": ("large", "커요", "大"), "medium": ("medium", "보통", "中等"), "small": ("small", "작아요", "小")}[
                 last.size]),
        ]
        colour = first.colour()
        if colour:
            c = COLOURS[colour]
            pairs.append(((f"What colour is the {first.en}?", f"{_topic(first.ko)} 무슨 색이에요?", f"{first.zh}是什么颜色的？"),
                          (colour, c[2], c[3])))
        turns = self._turns(p, pairs, 6)
        for turn in turns:
            for lang in p.languages:
                turn["question"][lang] += "\n" + p.short_answer[lang]
        if len(turns) >= 6:
            conversations = [turns[:3], turns[3:6]]
        else:
            conversations = [turns]
        return {"conversations": [{"turns": c} for c in conversations]}


# ---------------------------------------------------------------- the judge

_REVIEW = re.compile(
    r"\[(?:Question|질문)\]\n(?P<question>.*?)\n\n"
    r"\[(?:Assistant|어시스턴트) 1\]\n(?P<reference>.*?)\n\n\[(?:End of Assistant 1|어시스턴트 1 끝)\]\n\n"
    r"\[(?:Assistant|어시스턴트) 2\]\n(?P<answer>.*?)\n\n\[(?:End of Assistant 2|어시스턴트 2 끝)\]",
    re.DOTALL,
)
_PAIRWISE = re.compile(
    r"\[Question\]\n(?P<question>.*?)\n\n\[Answer A\]\n(?P<a>.*?)\n\[End of Answer A\]\n\n"
    r"\[Answer B\]\n(?P<b>.*?)\n\[End of Answer B\].*?since the question is in (?P<language>[^,]+?), whether",
    re.DOTALL,
)
_SCRIPT = {"English": r"[A-Za-z]", "Korean": r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]",
           "Chinese": r"[\u4e00-\u9fff\u3400-\u4dbf]", "Simplified Chinese": r"[\u4e00-\u9fff\u3400-\u4dbf]"}
_LETTER = re.compile(r"[^\W\d_]")


def tokens(text: str) -> set[str]:
    """Words of Latin text, character bigrams of other scripts (Korean particles, Chinese without spaces)."""
    out: set[str] = set()
    for word in re.findall(r"\w+", text.casefold()):
        if word.isascii():
            out.add(word)
        else:
            out |= {word[i : i + 2] for i in range(len(word) - 1)} or {word}
    return out


def f1(answer: str, reference: str) -> float:
    a, r = tokens(answer), tokens(reference)
    common = len(a & r)
    if not common:
        return 0.0
    precision, recall = common / len(a), common / len(r)
    return 2 * precision * recall / (precision + recall)


def script_share(text: str, language: str) -> float:
    if not text.strip():
        return 0.0
    letters = len(_LETTER.findall(text))
    pattern = _SCRIPT.get(language)
    if not letters or pattern is None:  # "3" is an answer in every language
        return 1.0
    return len(re.findall(pattern, text)) / letters


def preference_score(answer: str, question: str, language: str) -> float:
    """How good an answer looks without a reference: in the question's language, about what was
    asked, and saying something (an empty answer scores 0)."""
    if not answer.strip():
        return 0.0
    q, a = tokens(question), tokens(answer)
    overlap = len(q & a) / len(q) if q else 0.0
    return round(2 * script_share(answer, language) + overlap + 0.5 * min(len(a), 20) / 20, 6)


class FixtureJudge:
    """The responder: LLaVA-Bench reviews (en, ko) and pairwise verdicts, scored from the request text."""

    model = JUDGE_MODEL

    def __call__(self, request: ChatRequest) -> Reply:
        text = request.text()
        review = _REVIEW.search(text)
        if review:
            return self._review(review, korean="[어시스턴트 1]" in text)
        pair = _PAIRWISE.search(text)
        if pair:
            return self._pairwise(pair)
        raise ResponderError(400, "not a judge prompt: neither a LLaVA-Bench review nor a pairwise comparison")

    @staticmethod
    def _review(m: re.Match, korean: bool) -> Reply:
        reference, answer = m.group("reference"), m.group("answer")
        s1 = 10.0 if reference.strip() else 1.0
        s2 = round(1 + 9 * f1(answer, reference), 1)
        shared, total = len(tokens(answer) & tokens(reference)), len(tokens(reference))
        if korean:
            why = f"어시스턴트 2의 답변은 기준 답변의 단어 {total}개 중 {shared}개를 담고 있어요."
        else:
            why = f"Assistant 2 shares {shared} of the {total} words of Assistant 1's answer."
        content = f"{s1:g} {s2:g}\n{why}"
        return Reply(content, prompt_tokens=len(m.string) // 4, completion_tokens=len(content) // 4)

    @staticmethod
    def _pairwise(m: re.Match) -> Reply:
        question, language = m.group("question"), m.group("language").strip()
        a = preference_score(m.group("a"), question, language)
        b = preference_score(m.group("b"), question, language)
        verdict = "Answer A is better" if a > b else "Answer B is better" if b > a else "Both answers are similar"
        content = f"{verdict}\nScores: A {a:.2f}, B {b:.2f} (language, relevance to the question, content)."
        return Reply(content, prompt_tokens=len(m.string) // 4, completion_tokens=len(content) // 4)


# ---------------------------------------------------------------- servers


def start_fixture_teacher(faults: FaultConfig | None = None) -> ServerThread:
    """The fixture teacher on 127.0.0.1 (a free port), started; `.base_url`, `.stats`, `.stop()`."""
    return ServerThread(create_app(FixtureTeacher(), faults, model_ids=(TEACHER_MODEL,))).start()


def start_fixture_judge(faults: FaultConfig | None = None) -> ServerThread:
    """The fixture judge on 127.0.0.1 (a free port), started; `.base_url`, `.stats`, `.stop()`."""
    return ServerThread(create_app(FixtureJudge(), faults, model_ids=(JUDGE_MODEL,))).start()


@contextmanager
def fixture_endpoints() -> Iterator[tuple[str, str]]:
    """(teacher base URL, judge base URL), both served for the block and stopped after it."""
    teacher = start_fixture_teacher()
    try:
        judge = start_fixture_judge()
        try:
            yield teacher.base_url, judge.base_url
        finally:
            judge.stop()
    finally:
        teacher.stop()
