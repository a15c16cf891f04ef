//! The resume history: the last `HUB_HISTORY` sequenced frames, and no more than
//! `HUB_HISTORY_BYTES` of them, so a client that reconnects with `?since=` gets exactly what it
//! missed, or nothing partial (a resume from before the oldest frame kept is a `resync`).

use std::collections::VecDeque;

use crate::hub::frame::Frame;

pub struct History {
    cap: usize,
    max_bytes: usize,
    bytes: usize,
    frames: VecDeque<(u64, Frame)>,
}

impl History {
    /// At most `cap` frames and `max_bytes` bytes of frame text.
    pub fn new(cap: usize, max_bytes: usize) -> Self {
        History {
            cap,
            max_bytes,
            bytes: 0,
            frames: VecDeque::with_capacity(cap.min(65_536)),
        }
    }

    /// Appends a frame, dropping the oldest ones beyond either limit. Returns how many frames
    /// were dropped because of the byte limit (the hub counts them).
    pub fn push(&mut self, seq: u64, frame: Frame) -> usize {
        if self.cap == 0 {
            return 0;
        }
        if self.frames.len() == self.cap {
            self.pop();
        }
        self.bytes += frame.len();
        self.frames.push_back((seq, frame));
        let mut by_bytes = 0;
        // The newest frame always stays, even alone over the limit: resume from it must work.
        while self.bytes > self.max_bytes && self.frames.len() > 1 {
            self.pop();
            by_bytes += 1;
        }
        by_bytes
    }

    fn pop(&mut self) {
        if let Some((_, f)) = self.frames.pop_front() {
            self.bytes -= f.len();
        }
    }

    /// Bytes of frame text held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every frame after `since` up to `last`, or `None` when some of them are gone.
    pub fn after(&self, since: u64, last: u64) -> Option<Vec<Frame>> {
        if since > last {
            return None;
        }
        if since == last {
            return Some(Vec::new());
        }
        let first = self.frames.front()?.0;
        if first > since + 1 {
            return None;
        }
        let skip = (since + 1 - first) as usize;
        Some(
            self.frames
                .iter()
                .skip(skip)
                .map(|(_, f)| f.clone())
                .collect(),
        )
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(cap: usize, n: u64) -> History {
        let mut h = History::new(cap, usize::MAX);
        for seq in 1..=n {
            h.push(seq, Frame::from(seq.to_string()));
        }
        h
    }

    #[test]
    fn replays_exactly_the_missed_frames() {
        let h = filled(5, 8); // keeps 4..=8
        let got: Vec<_> = h
            .after(5, 8)
            .unwrap()
            .iter()
            .map(|b| b.to_string())
            .collect();
        assert_eq!(got, ["6", "7", "8"]);
        assert_eq!(h.after(3, 8).unwrap().len(), 5);
        assert_eq!(h.after(8, 8).unwrap().len(), 0);
        assert_eq!(h.len(), 5);
    }

    #[test]
    fn refuses_partial_replays() {
        let h = filled(5, 8);
        assert!(h.after(2, 8).is_none());
        assert!(h.after(9, 8).is_none());
        assert!(History::new(0, usize::MAX).after(0, 3).is_none());
    }

    #[test]
    fn bounded_by_bytes_too() {
        // Frames of 10 bytes under a 35-byte budget: 3 kept, each push beyond drops one.
        let mut h = History::new(100, 35);
        let mut dropped = 0;
        for seq in 1..=10u64 {
            dropped += h.push(seq, Frame::from(format!("frame-{seq:04}")));
        }
        assert_eq!((h.len(), h.bytes(), dropped), (3, 30, 7));
        assert_eq!(h.after(7, 10).unwrap().len(), 3);
        assert!(h.after(6, 10).is_none(), "seq 7 is gone: no partial replay");
        // A single frame larger than the budget is still kept, alone.
        assert_eq!(h.push(11, Frame::from("x".repeat(100))), 3);
        assert_eq!((h.len(), h.bytes()), (1, 100));
        assert_eq!(h.after(10, 11).unwrap().len(), 1);
    }
}
