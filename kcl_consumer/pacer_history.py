"""The primary's write history by arrival time: its average rate and a forecast of the unseen.

The pacer sees the stream only as fast as it applies it, so the primary's rate
is measured on the records' arrival times (Kinesis' ApproximateArrivalTimestamp),
never on when they were fetched: a lagging consumer would otherwise measure
itself. WCU go into bins of arrival time; the last `window_ms` of them give the
average, and, shifted back by whole windows, a forecast of what arrived after
the newest record seen (the backlog still in the stream). With a 24 h window
that forecast is "the same hours yesterday", which follows a daily cycle.

Pure bookkeeping, no clock and no lock: the pacer owns both.
"""

from __future__ import annotations

import math

BINS_PER_WINDOW = 288
"""A 24 h window is kept in 5-minute bins."""
MIN_SPAN_MS = 60_000
"""While less history than this exists, the average is taken over this span."""
RECENT_BINS = 12
"""The recent rate is measured over the newest 12 bins (1 h of a 24 h window)."""


class ArrivalHistory:
    """WCU by arrival time (epoch ms) over the last window, plus provisional entries.

    Provisional entries come from acquisitions made before their batch was observed
    (a processor that reports a batch after applying it); observing the batch
    replaces them, so nothing is counted twice.
    """

    __slots__ = (
        "_bin_ms",
        "_bins",
        "_bins_total",
        "_first_ms",
        "_newest_ms",
        "_provisional",
        "_provisional_newest_ms",
        "_quiet_until_ms",
        "_window_ms",
    )

    def __init__(self, window_s: float) -> None:
        self._window_ms = round(window_s * 1000)
        self._bin_ms = max(1, self._window_ms // BINS_PER_WINDOW)
        self._bins: dict[int, float] = {}
        self._bins_total = 0.0  # the sum of self._bins, kept as they change
        self._provisional: dict[int, float] = {}
        self._first_ms: int | None = None
        self._newest_ms: int | None = None
        self._provisional_newest_ms: int | None = None
        self._quiet_until_ms: int | None = None

    @property
    def bin_ms(self) -> int:
        """The width of one bin of arrival time."""
        return self._bin_ms

    @property
    def newest_ms(self) -> int | None:
        """The newest arrival time recorded (observed or provisional)."""
        if self._provisional_newest_ms is None:
            return self._newest_ms
        if self._newest_ms is None:
            return self._provisional_newest_ms
        return max(self._newest_ms, self._provisional_newest_ms)

    @property
    def known_until_ms(self) -> int | None:
        """Arrivals up to this time are all recorded: the newest, or a later tip reached."""
        newest = self.newest_ms
        if newest is None or self._quiet_until_ms is None:
            return newest
        return max(newest, self._quiet_until_ms)

    def quiet_until(self, until_ms: int | None) -> None:
        """Nothing arrived after the newest record until then (a read reached the tip)."""
        self._quiet_until_ms = until_ms

    def add(self, wcu: float, oldest_ms: int, newest_ms: int) -> None:
        """WCU that arrived between two times, spread evenly over them."""
        if newest_ms < oldest_ms:
            oldest_ms, newest_ms = newest_ms, oldest_ms
        self._provisional.clear()
        self._provisional_newest_ms = None
        self._advance(newest_ms)
        if self._first_ms is None or oldest_ms < self._first_ms:
            self._first_ms = oldest_ms
        if wcu <= 0:
            return
        low = self._low_index()
        if newest_ms == oldest_ms:
            index = oldest_ms // self._bin_ms
            if index >= low:
                self._bins[index] = self._bins.get(index, 0.0) + wcu
                self._bins_total += wcu
            return
        density = wcu / (newest_ms - oldest_ms)
        start = oldest_ms
        while start < newest_ms:
            index = start // self._bin_ms
            end = min(newest_ms, (index + 1) * self._bin_ms)
            if index >= low:
                piece = density * (end - start)
                self._bins[index] = self._bins.get(index, 0.0) + piece
                self._bins_total += piece
            start = end

    def add_provisional(self, wcu: float, arrival_ms: int) -> None:
        """WCU acquired for records newer than anything observed, until their batch is."""
        index = arrival_ms // self._bin_ms
        self._provisional[index] = self._provisional.get(index, 0.0) + wcu
        if self._provisional_newest_ms is None or arrival_ms > self._provisional_newest_ms:
            self._provisional_newest_ms = arrival_ms
        if self._first_ms is None or arrival_ms < self._first_ms:
            self._first_ms = arrival_ms
        if len(self._provisional) > 2 * BINS_PER_WINDOW:
            # Nobody observes batches: keep the last window's worth.
            floor = self._provisional_newest_ms // self._bin_ms - BINS_PER_WINDOW - 1
            for old in [i for i in self._provisional if i < floor]:
                del self._provisional[old]

    def average_wcu_s(self) -> float:
        """WCU per second over the last window of arrival time (or all of it, while shorter)."""
        newest = self.known_until_ms
        if newest is None or self._first_ms is None:
            return 0.0
        top = newest // self._bin_ms
        low = top - BINS_PER_WINDOW + 1
        start = max(self._first_ms, low * self._bin_ms)
        # Every bin kept, less the few kept below the window (kept for the forecast).
        total = self._bins_total
        kept_from = self._low_index()
        if low - kept_from > BINS_PER_WINDOW + 2:
            total = 0.0  # quiet for longer than a window: nothing recorded is in it
        else:
            for index in range(kept_from, low):
                total -= self._bins.get(index, 0.0)
        total = max(0.0, total)
        total += sum(v for i, v in self._provisional.items() if low <= i <= top)
        span_ms = max(MIN_SPAN_MS, newest - start)
        return total * 1000.0 / span_ms

    @property
    def warm(self) -> bool:
        """True once the history spans a whole window of arrival time."""
        newest = self.known_until_ms
        if newest is None or self._first_ms is None:
            return False
        return newest - self._first_ms >= self._window_ms

    def recent_wcu_s(self) -> float:
        """WCU per second over the newest RECENT_BINS bins of arrival time seen."""
        newest = self.known_until_ms
        if newest is None or self._first_ms is None:
            return 0.0
        top = newest // self._bin_ms
        low = top - RECENT_BINS + 1
        start = max(self._first_ms, low * self._bin_ms)
        total = sum(self._value(index) for index in range(low, top + 1))
        return total * 1000.0 / max(MIN_SPAN_MS, newest - start)

    def fallback_wcu_s(self) -> float:
        """The rate assumed where the history says nothing: the average, or while the
        history is shorter than a window, the recent rate if higher (a load on the rise
        must not be mistaken for its quiet start)."""
        average = self.average_wcu_s()
        return average if self.warm else max(average, self.recent_wcu_s())

    def segments(
        self, start_ms: int, end_ms: int, quiet_until_ms: int | None = None
    ) -> list[tuple[int, float]]:
        """(oldest arrival, WCU) for arrival times start..end, one segment per bin.

        Up to the newest arrival recorded the WCU are the recorded ones; beyond it
        (and beyond `quiet_until_ms`, before which nothing more arrived) they are
        forecast from the same span whole windows earlier, or from the average
        where the history does not reach that far back.
        """
        newest = self.newest_ms
        if newest is None or end_ms <= start_ms:
            return []
        known = self.known_until_ms or newest
        unseen_after = known if quiet_until_ms is None else max(known, quiet_until_ms)
        average_per_ms = self.fallback_wcu_s() / 1000.0
        top = known // self._bin_ms  # forecasts come from the whole bins before this one
        first = self._first_ms if self._first_ms is not None else newest
        first_full = first // self._bin_ms + 1  # the first bin recorded from its start
        out: list[tuple[int, float]] = []
        begin = start_ms
        while begin < end_ms:
            index = begin // self._bin_ms
            bin_start = index * self._bin_ms
            finish = min(end_ms, bin_start + self._bin_ms)
            wcu = 0.0
            oldest = begin  # the oldest arrival the segment's WCU may have
            if begin <= newest:
                # Recorded: the bin's WCU spread over the part of it that is recorded (a
                # bin recorded at one instant only is counted whole).
                filled_from = max(bin_start, first)
                filled_to = min(bin_start + self._bin_ms, newest)
                share = 1.0
                if filled_to > filled_from:
                    share = min(1.0, (min(finish, newest) - begin) / (filled_to - filled_from))
                wcu += self._value(index) * share
            unseen_from = max(begin, unseen_after)
            if wcu <= 0:
                oldest = unseen_from
            if unseen_from < finish:
                # Forecast: the same bin whole windows earlier, in the last full bins.
                shift = math.ceil((index - (top - 1)) / BINS_PER_WINDOW) if index >= top else 0
                source = index - shift * BINS_PER_WINDOW
                length = finish - unseen_from
                if source >= first_full:
                    wcu += self._value(source) * length / self._bin_ms
                else:
                    wcu += average_per_ms * length
            out.append((oldest, wcu))
            begin = finish
        return out

    def _value(self, index: int) -> float:
        return self._bins.get(index, 0.0) + self._provisional.get(index, 0.0)

    def _low_index(self) -> int:
        """The oldest bin kept: one window behind the newest, plus one for the forecast."""
        if self._newest_ms is None:
            return -(2**62)
        return self._newest_ms // self._bin_ms - BINS_PER_WINDOW - 1

    def _advance(self, newest_ms: int) -> None:
        if self._newest_ms is not None and newest_ms <= self._newest_ms:
            return
        old_low = self._low_index()
        self._newest_ms = newest_ms
        new_low = self._low_index()
        if old_low < -(2**61) or new_low - old_low > len(self._bins):
            for index in [i for i in self._bins if i < new_low]:
                del self._bins[index]
        else:
            for index in range(old_low, new_low):
                self._bins.pop(index, None)
        if new_low != old_low:
            self._bins_total = sum(self._bins.values())  # exact again, no drift
