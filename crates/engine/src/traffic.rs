//! Traffic totals for the dashboard: bitswap bytes uploaded and downloaded today, this month and all time (local
//! calendar days and months), added from the node's wire counters every limits tick and kept in
//! [`TRAFFIC_TOTALS_FILE`] so they survive restarts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::limits::LocalTime;

/// The file in the data dir that keeps the totals.
pub const TRAFFIC_TOTALS_FILE: &str = "traffic-totals.json";

/// Bytes sent and received in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
}

impl Traffic {
    fn add(&mut self, uploaded_bytes: u64, downloaded_bytes: u64) {
        self.uploaded_bytes = self.uploaded_bytes.saturating_add(uploaded_bytes);
        self.downloaded_bytes = self.downloaded_bytes.saturating_add(downloaded_bytes);
    }
}

/// `pkgseed status --json` → `traffic`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficTotals {
    /// `YYYY-MM-DD` (local time): the day `today` counts.
    pub day: String,
    /// `YYYY-MM` (local time): the month `this_month` counts.
    pub month: String,
    pub today: Traffic,
    pub this_month: Traffic,
    pub all_time: Traffic,
}

impl TrafficTotals {
    /// Starts new counts for a day or month other than the one counted; true if anything changed.
    pub fn roll(&mut self, t: LocalTime) -> bool {
        let (day, month) = (t.day_key(), t.month_key());
        let mut changed = false;
        if self.day != day {
            self.day = day;
            self.today = Traffic::default();
            changed = true;
        }
        if self.month != month {
            self.month = month;
            self.this_month = Traffic::default();
            changed = true;
        }
        changed
    }

    pub fn add(&mut self, t: LocalTime, uploaded_bytes: u64, downloaded_bytes: u64) {
        self.roll(t);
        for period in [&mut self.today, &mut self.this_month, &mut self.all_time] {
            period.add(uploaded_bytes, downloaded_bytes);
        }
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(TRAFFIC_TOTALS_FILE)
    }

    /// A missing or unreadable file starts from zero (with a warning for the unreadable one).
    pub fn load(data_dir: &Path) -> TrafficTotals {
        crate::fs_util::read_json_or_default(&TrafficTotals::path(data_dir), "traffic totals")
    }

    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        crate::fs_util::write_json_atomically(&TrafficTotals::path(data_dir), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(year: i32, month: u32, day: u32) -> LocalTime {
        LocalTime {
            year,
            month,
            day,
            weekday: 0,
            minute_of_day: 0,
        }
    }

    #[test]
    fn a_new_day_and_a_new_month_start_from_zero_all_time_keeps_counting() {
        let mut totals = TrafficTotals::default();
        totals.add(on(2026, 12, 30), 100, 10);
        totals.add(on(2026, 12, 30), 1, 2);
        assert_eq!(totals.day, "2026-12-30");
        assert_eq!(
            totals.today,
            Traffic {
                uploaded_bytes: 101,
                downloaded_bytes: 12
            }
        );
        assert_eq!(totals.this_month, totals.today);

        // The next day, same month.
        totals.add(on(2026, 12, 31), 5, 0);
        assert_eq!(
            totals.today,
            Traffic {
                uploaded_bytes: 5,
                downloaded_bytes: 0
            }
        );
        assert_eq!(
            totals.this_month,
            Traffic {
                uploaded_bytes: 106,
                downloaded_bytes: 12
            }
        );

        // A new month, with no traffic yet: rolling alone zeroes today and the month.
        assert!(totals.roll(on(2027, 1, 1)));
        assert!(!totals.roll(on(2027, 1, 1)));
        assert_eq!(totals.today, Traffic::default());
        assert_eq!(totals.this_month, Traffic::default());
        assert_eq!(
            totals.all_time,
            Traffic {
                uploaded_bytes: 106,
                downloaded_bytes: 12
            }
        );
    }

    #[test]
    fn totals_survive_a_restart_and_a_bad_file_starts_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut totals = TrafficTotals::default();
        totals.add(on(2026, 11, 30), 7, 3);
        totals.save(dir.path()).unwrap();
        assert_eq!(TrafficTotals::load(dir.path()), totals);

        std::fs::write(TrafficTotals::path(dir.path()), b"{not json").unwrap();
        assert_eq!(TrafficTotals::load(dir.path()), TrafficTotals::default());
    }
}
