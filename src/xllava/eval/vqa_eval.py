"""VQAv2 accuracy: the official answer processing and the 10-annotator soft score.

Written from the protocol's description (EvalAI's answer processor, as LLaVA and lmms-eval apply it),
including two quirks of the original code kept so scores match it bit for bit:
- the period pattern `(?!<=\\d)(\\.)(?!\\d)` has a malformed look-behind, so it deletes every period
  that is not followed by a digit (also one after a digit: "5." -> "5");
- `re.UNICODE` is passed as the *count* argument of `sub`, so at most 32 periods are removed.

Score of one prediction: for each of the 10 annotators, drop that annotator and take
min(1, #remaining answers equal to the prediction / 3); average the 10 values.
"""

from __future__ import annotations

import re

OFFICIAL_PROTOCOL = (
    "official: VQAv2 accuracy as the official evaluator (vqaEval.py) scores LLaVA-1.5's submission: "
    "prediction through EvalAI answer processing; annotator answers (and the prediction once more) "
    "through punctuation and digit/article processing only when the annotators disagree, otherwise the "
    "raw answers compared; min(#matches/3, 1) averaged over the 10 leave-one-annotator-out subsets"
)
EXTENDED_PROTOCOL = (
    "extended: VQAv2 accuracy with the annotators' answers always processed (lmms-eval's variant), "
    "prediction through EvalAI answer processing; same leave-one-annotator-out soft score"
)
PROTOCOL = OFFICIAL_PROTOCOL

_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    # the official table maps this one backwards; kept for identical scores
    "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    "somethingll": "something'll", "thats": "that's", "thered": "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", "therere": "there're", "theres": "there's", "theyd": "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're",
    "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's", "whereve": "where've",
    "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll", "whos": "who's",
    "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
_NUMBERS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = {"a", "an", "the"}
_PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",",
                "?", "!"]
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")


def process_punctuation(text: str) -> str:
    out = text
    digit_comma = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in _PUNCTUATION:
        # A mark touching a space (or any text with a digit-comma-digit) is deleted; one inside a
        # word becomes a space ("black-and-white" -> "black and white").
        if (p + " " in text or " " + p in text) or digit_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out, re.UNICODE)  # count=32: the original's quirk, see the module doc


def process_digit_article(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = _NUMBERS.get(word, word)
        if word not in _ARTICLES:
            words.append(word)
    return " ".join(_CONTRACTIONS.get(w, w) for w in words)


def process_prediction(text: str) -> str:
    """EvalAI's full processor, applied to model outputs before submission (LLaVA)."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def process_gold(text: str) -> str:
    return process_digit_article(process_punctuation(text.replace("\n", " ").replace("\t", " ").strip()))


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def official_accuracy(submitted: str, answers: list[str]) -> float:
    """The official evaluator's score of one *submitted* answer (already through the EvalAI processor,
    as LLaVA writes its submission). Processing happens only when the annotators disagree: when all
    give the same string, the submitted answer must equal it as written (so "Yes" never matches an
    all-"yes" question, and "2" never matches an all-"two" one)."""
    if not answers:
        raise ValueError("VQA accuracy needs the annotators' answers")
    pred = _clean(submitted)
    gold = [_clean(a) for a in answers]
    if len(set(gold)) > 1:
        gold = [process_digit_article(process_punctuation(g)) for g in gold]
        pred = process_digit_article(process_punctuation(pred))
    return _leave_one_out(pred, gold)


def vqa_accuracy(prediction: str, answers: list[str], mode: str = "official") -> float:
    """Soft accuracy of one model output against the annotators' answers (10 in VQAv2): `official`
    (the output as LLaVA submits it, scored by the official evaluator) or `extended`."""
    if mode == "official":
        return official_accuracy(process_prediction(prediction), answers)
    if not answers:
        raise ValueError("VQA accuracy needs the annotators' answers")
    return _leave_one_out(process_prediction(prediction), [process_gold(a) for a in answers])


def _leave_one_out(pred: str, gold: list[str]) -> float:
    values = []
    for drop in range(len(gold)):
        matches = sum(1 for i, g in enumerate(gold) if i != drop and g == pred)
        values.append(min(1.0, matches / 3))
    return sum(values) / len(values)
