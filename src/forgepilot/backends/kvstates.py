"""Saved KV states of earlier prompts: a prompt seen before resumes where it was instead of being evaluated again.

llama.cpp keeps one live KV cache per context, and a new prompt reuses only its longest common prefix with whatever
was evaluated last. An editor moves between spots and files, and chat tasks and evaluations use the same model in
between, so the live cache alone forgets the file being edited. Here copies of sequence 0's cells
(``llama_state_seq_get_data``: about 12 KiB a token for Qwen2.5-Coder-0.5B, milliseconds to copy either way) are
kept in memory, bounded by bytes, and found again by the longest common token prefix.

Two kinds: *warm* states (a file's prompt up to the end of its prefix window, evaluated in the background so that a
request anywhere in that window evaluates only the cursor's line and the suffix) are kept until the byte budget
pushes the least recently used out; *request* states (what the live cache held after an editor's completion) are
kept only for the last few requests, since every keystroke makes one and the newest covers the older ones' spot.

llama-cpp-python's own ``save_state`` also copies the logits of a whole batch (300 MB for a 150k vocabulary), which
is why it is not used.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

StateKind = Literal["warm", "request"]
#: Request states kept at most (the newest ones).
MAX_REQUEST_STATES = 4


@dataclass(eq=False)  # compared by identity: the token arrays have no single truth value
class SavedState:
    tokens: np.ndarray  # token ids by position
    data: bytes  # sequence 0's cells as llama.cpp serialises them
    kind: StateKind
    used_at: float

    @property
    def nbytes(self) -> int:
        return len(self.data) + self.tokens.nbytes


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


def _as_tokens(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    return np.asarray(tokens, dtype=np.int32)


class PromptStates:
    """An LRU of saved KV states bounded by ``capacity_bytes``; safe to query from any thread."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._states: list[SavedState] = []
        self._lock = threading.Lock()
        self.restores = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(s.nbytes for s in self._states)

    def best(self, tokens: Sequence[int] | np.ndarray) -> tuple[SavedState | None, int]:
        """The saved state sharing the longest prefix with ``tokens``, and that length (0 and None when none)."""
        want = _as_tokens(tokens)
        found: SavedState | None = None
        length = 0
        with self._lock:
            for state in self._states:
                n = common_prefix(state.tokens, want)
                if n > length:
                    found, length = state, n
        return found, length

    def save(self, llm: Any, kind: StateKind) -> None:
        """Copy the live cache of ``llm`` (a ``llama_cpp.Llama``) as a state of ``kind``."""
        if self.capacity_bytes <= 0 or llm.n_tokens == 0:
            return
        tokens = np.array(llm.input_ids[: llm.n_tokens], dtype=np.int32)
        with self._lock:
            for state in self._states:
                if len(state.tokens) >= len(tokens) and common_prefix(state.tokens, tokens) == len(tokens):
                    state.used_at = time.monotonic()  # already held by a longer state
                    if kind == "warm":
                        state.kind = "warm"
                    return
        data = snapshot(llm)
        if data is None:
            return
        new = SavedState(tokens, data, kind, time.monotonic())
        with self._lock:
            # A state whose tokens are a prefix of the new one's holds nothing the new one does not.
            self._states = [
                s
                for s in self._states
                if not (len(s.tokens) <= len(tokens) and common_prefix(s.tokens, tokens) == len(s.tokens))
            ]
            self._states.append(new)
            requests = [s for s in self._states if s.kind == "request"]
            for old in sorted(requests, key=lambda s: s.used_at)[: max(0, len(requests) - MAX_REQUEST_STATES)]:
                self._states.remove(old)
            while sum(s.nbytes for s in self._states) > self.capacity_bytes and len(self._states) > 1:
                self._states.remove(min(self._states, key=lambda s: s.used_at))
            if new.nbytes > self.capacity_bytes:
                self._states.remove(new)

    def restore(self, llm: Any, state: SavedState) -> bool:
        """Make ``state`` the live cache of ``llm``; False (the live cache emptied) when llama.cpp refuses it."""
        ok = load_snapshot(llm, state.tokens, state.data)
        if ok:
            with self._lock:
                state.used_at = time.monotonic()
                self.restores += 1
        return ok

    def clear(self) -> None:
        with self._lock:
            self._states.clear()


def snapshot(llm: Any) -> bytes | None:
    """Sequence 0's cells of the live cache, or None when llama.cpp cannot serialise them."""
    import llama_cpp

    ctx = llm._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, 0)
    if size <= 0:
        return None
    buf = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
    if written <= 0 or written > size:
        return None
    return bytes(buf)[:written]


def load_snapshot(llm: Any, tokens: np.ndarray, data: bytes) -> bool:
    """Replace the live cache of ``llm`` by ``data`` (cells of ``tokens``); on failure the live cache is empty."""
    import llama_cpp

    ctx = llm._ctx.ctx
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), 0, -1, -1)
    src = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    if llama_cpp.llama_state_seq_set_data(ctx, src, len(data), 0) != len(data):
        llm.n_tokens = 0
        return False
    n = len(tokens)
    llm.input_ids[:n] = tokens
    llm.n_tokens = n
    # The logits of the last position are not part of the copy: the next generation evaluates at least one token.
    llm._requires_eval = True
    return True
