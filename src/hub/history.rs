//! The resume history: the last `HUB_HISTORY` sequenced frames, so a client that reconnects
//! with `?since=` gets exactly what it missed, or nothing partial.

use std::collections::VecDeque;

use crate::hub::frame::Frame;

pub struct History {
    cap: usize,
    frames: VecDeque<(u64, Frame)>,
}

impl History {
    pub fn new(cap: usize) -> Self {
        History {
            cap,
            frames: VecDeque::with_capacity(cap.min(65_536)),
        }
    }

    pub fn push(&mut self, seq: u64, frame: Frame) {
        if self.cap == 0 {
            return;
        }
        if self.frames.len() == self.cap {
            self.frames.pop_front();
        }
        self.frames.push_back((seq, frame));
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
        let mut h = History::new(cap);
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
        assert!(History::new(0).after(0, 3).is_none());
    }
}
