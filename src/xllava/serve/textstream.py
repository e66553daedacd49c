"""Token ids to text deltas, as they are generated, with stop sequences.

Text is emitted only when it is final: never half a UTF-8 character (a byte-level BPE token can
end inside a Hangul syllable), and never a tail that might still grow into a stop sequence.
Each token is decoded together with the few tokens before it (the usual incremental detokenizer:
a prefix and a read offset), so the cost per token stays constant however long the answer grows,
and spaces and merges come out exactly as a one-shot decode gives them.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


class TextStream:
    def __init__(self, tokenizer: PreTrainedTokenizerBase, stops: list[str] | None = None, incremental: bool = True):
        self.tokenizer = tokenizer
        self.stops = stops or []
        # with no stop sequences and no one reading deltas, decoding once at the end is enough
        self.incremental = incremental or bool(self.stops)
        self.ids: list[int] = []
        self.decoded = ""  # the text of ids[:read], final
        self.text = ""  # what was emitted: a prefix of `decoded` (a possible stop's start held back)
        self.stopped = False
        self._prefix = 0  # ids[prefix:read] give context for decoding the next token
        self._read = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that became final (maybe ''). Sets `stopped`."""
        self.ids.append(token_id)
        if not self.incremental:
            return ""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):  # nothing yet, or half a character
            return ""
        self.decoded += after[len(before) :]
        self._prefix, self._read = self._read, len(self.ids)
        return self._release()

    def finish(self) -> str:
        """At the end of generation (length or end-of-sequence): whatever is still held back."""
        if self.stopped:
            return ""
        if not self.incremental:
            self.decoded = self._decode(self.ids)
        else:  # a trailing incomplete character is all that can be left undecoded
            self.decoded += self._decode(self.ids[self._prefix :])[len(self._decode(self.ids[self._prefix : self._read])) :]
        return self._emit(self.decoded)

    def _release(self) -> str:
        start = max(0, len(self.text))
        hits = [i for i in (self.decoded.find(s, start) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            return self._emit(self.decoded[: min(hits)])
        return self._emit(self.decoded[: len(self.decoded) - self._held_back()])

    def _emit(self, upto: str) -> str:
        delta = upto[len(self.text) :]
        self.text = upto
        return delta

    def _held_back(self) -> int:
        """Length of the longest tail of the decoded text (past what was emitted) that starts a stop sequence."""
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(self.decoded) - len(self.text)), keep, -1):
                if self.decoded.endswith(s[:n]):
                    keep = n
                    break
        return keep
