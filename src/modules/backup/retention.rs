//! Grandfather-father-son retention of one database's (or volume's) backups.
//!
//! From the newest backup back, each tier looks only at the backups older
//! than everything the tier before it kept:
//!
//! - **daily** (sons): the newest backup of each of the `daily` most recent
//!   days (UTC) that have one;
//! - **weekly** (fathers): then the newest backup of each of the `weekly`
//!   most recent weeks (Monday to Sunday, UTC);
//! - **monthly** (grandfathers): then the newest of each of the `monthly`
//!   most recent calendar months.
//!
//! Everything else is pruned. The newest backup is never pruned, whatever the
//! policy says. With one backup a day, `{daily: 7, weekly: 4, monthly: 3}`
//! keeps 14 backups: the last 7 days, one for each of the 4 weeks before
//! them, one for each of the 3 months before those. Time comes from the
//! backups' own `created` stamps, so a simulated clock drives it in tests.

use serde::Deserialize;

use super::Manifest;
use crate::args::de_opt_u64;

/// How many backups of each tier to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub daily: u64,
    pub weekly: u64,
    pub monthly: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            daily: 7,
            weekly: 4,
            monthly: 3,
        }
    }
}

/// The `retention` argument as a task writes it; absent keys take the default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyArg {
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub daily: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub weekly: Option<u64>,
    #[serde(default, deserialize_with = "de_opt_u64")]
    pub monthly: Option<u64>,
}

impl PolicyArg {
    pub fn policy(&self) -> Policy {
        let d = Policy::default();
        Policy {
            daily: self.daily.unwrap_or(d.daily),
            weekly: self.weekly.unwrap_or(d.weekly),
            monthly: self.monthly.unwrap_or(d.monthly),
        }
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Newest,
    Daily,
    Weekly,
    Monthly,
}

/// A backup's period for a tier (its day, week or month).
type PeriodKey<'a> = dyn Fn(&Manifest) -> String + 'a;

/// The backups kept, newest first, each with its tier.
pub fn classify(backups: &[Manifest], policy: &Policy) -> Vec<(String, Tier)> {
    let mut sorted: Vec<&Manifest> = backups.iter().collect();
    sorted.sort_by(|a, b| {
        b.created_secs()
            .cmp(&a.created_secs())
            .then(b.id.cmp(&a.id))
    });
    let mut kept: Vec<(String, Tier)> = Vec::new();
    let Some(newest) = sorted.first() else {
        return kept;
    };
    let day = |m: &Manifest| m.created_secs() / 86_400;
    // 1970-01-01 was a Thursday: days since a Monday = (day + 3) % 7.
    let week = |m: &Manifest| {
        let d = day(m);
        d - (d + 3) % 7
    };
    let month = |m: &Manifest| m.created.get(0..7).unwrap_or("").to_string();
    // Backups at index >= `from` are older than everything kept so far.
    let mut from = 0;
    let tiers: [(Tier, u64, &PeriodKey); 3] = [
        (Tier::Daily, policy.daily, &|m| day(m).to_string()),
        (Tier::Weekly, policy.weekly, &|m| week(m).to_string()),
        (Tier::Monthly, policy.monthly, &month),
    ];
    for (tier, count, key) in tiers {
        let mut periods: Vec<String> = Vec::new();
        let mut last = None;
        for (i, m) in sorted.iter().enumerate().skip(from) {
            if periods.len() as u64 >= count {
                break;
            }
            let k = key(m);
            if periods.contains(&k) {
                continue;
            }
            periods.push(k);
            kept.push((m.id.clone(), tier));
            last = Some(i);
        }
        if let Some(i) = last {
            from = i + 1;
        }
    }
    if !kept.iter().any(|(id, _)| *id == newest.id) {
        kept.insert(0, (newest.id.clone(), Tier::Newest));
    }
    kept
}

/// The ids to remove: every backup [`classify`] does not keep.
pub fn prune(backups: &[Manifest], policy: &Policy) -> Vec<String> {
    let kept = classify(backups, policy);
    backups
        .iter()
        .filter(|m| !kept.iter().any(|(id, _)| *id == m.id))
        .map(|m| m.id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Clock, new_id};
    use super::*;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// A clock the test moves by hand.
    struct Simulated(std::sync::Mutex<SystemTime>);
    impl Clock for Simulated {
        fn now(&self) -> SystemTime {
            *self.0.lock().expect("clock")
        }
    }
    impl Simulated {
        fn advance(&self, d: Duration) {
            *self.0.lock().expect("clock") += d;
        }
    }

    fn backup(clock: &dyn Clock) -> Manifest {
        let (id, created) = new_id("plane", clock);
        Manifest {
            id,
            kind: "postgres".into(),
            project: "p".into(),
            name: "plane".into(),
            container: None,
            host: "h".into(),
            created,
            size: 1,
            sha256: String::new(),
            file: String::new(),
            format: "pg_dump -Fc".into(),
            release: None,
            login_user: None,
            volume: None,
            path: None,
        }
    }

    fn counts(kept: &[(String, Tier)]) -> (usize, usize, usize, usize) {
        let n = |t: Tier| kept.iter().filter(|(_, k)| *k == t).count();
        (
            n(Tier::Daily),
            n(Tier::Weekly),
            n(Tier::Monthly),
            n(Tier::Newest),
        )
    }

    /// One backup a day at 02:00 for 120 days from 2026-01-01, pruned after
    /// each one as the module does: exactly 7 daily, 4 weekly and 3 monthly
    /// backups remain, the newest among them.
    #[test]
    fn one_hundred_twenty_simulated_days_keep_exactly_7_4_3() {
        let start = UNIX_EPOCH + Duration::from_secs(1_767_232_800); // 2026-01-01T02:00:00Z
        let clock = Simulated(std::sync::Mutex::new(start));
        let policy = Policy::default();
        let mut kept: Vec<Manifest> = Vec::new();
        let mut newest = String::new();
        for day in 0..120 {
            if day > 0 {
                clock.advance(Duration::from_secs(86_400));
            }
            let b = backup(&clock);
            newest = b.id.clone();
            kept.push(b);
            let gone = prune(&kept, &policy);
            assert!(!gone.contains(&newest), "day {day}: the newest was pruned");
            kept.retain(|m| !gone.contains(&m.id));
        }
        let tiers = classify(&kept, &policy);
        assert_eq!(counts(&tiers), (7, 4, 3, 0), "{tiers:?}");
        assert_eq!(kept.len(), 14);
        assert_eq!(tiers[0], (newest.clone(), Tier::Daily));
        // The dailies are the last 7 days; weeklies are Sundays (a week's
        // newest); monthlies are in January, February and March.
        let mut created: Vec<&str> = kept.iter().map(|m| m.created.as_str()).collect();
        created.sort();
        assert_eq!(created[13], "2026-04-30T02:00:00Z");
        assert_eq!(created[7], "2026-04-24T02:00:00Z");
        let months: Vec<&str> = created[..3].iter().map(|c| &c[..7]).collect();
        assert_eq!(months, vec!["2026-01", "2026-02", "2026-03"]);
        // Pruning all at once at the end keeps the same counts.
        let mut all = Vec::new();
        let clock = Simulated(std::sync::Mutex::new(start));
        for day in 0..120 {
            if day > 0 {
                clock.advance(Duration::from_secs(86_400));
            }
            all.push(backup(&clock));
        }
        assert_eq!(counts(&classify(&all, &policy)), (7, 4, 3, 0));
        assert_eq!(prune(&all, &policy).len(), 120 - 14);
    }

    #[test]
    fn the_newest_is_never_pruned_and_a_day_keeps_its_newest() {
        let clock = Simulated(std::sync::Mutex::new(
            UNIX_EPOCH + Duration::from_secs(1_767_232_800),
        ));
        let mut all = Vec::new();
        for _ in 0..3 {
            all.push(backup(&clock));
            clock.advance(Duration::from_secs(3600));
        }
        let nothing = Policy {
            daily: 0,
            weekly: 0,
            monthly: 0,
        };
        assert_eq!(
            classify(&all, &nothing),
            vec![(all[2].id.clone(), Tier::Newest)]
        );
        let one = Policy {
            daily: 1,
            weekly: 0,
            monthly: 0,
        };
        // Three backups the same day: only the day's newest stays.
        assert_eq!(
            prune(&all, &one),
            vec![all[0].id.clone(), all[1].id.clone()]
        );
        assert!(prune(&[], &one).is_empty());
        let arg: PolicyArg =
            serde_json::from_value(serde_json::json!({"daily": "2"})).expect("arg");
        assert_eq!(
            arg.policy(),
            Policy {
                daily: 2,
                weekly: 4,
                monthly: 3
            }
        );
        assert!(serde_json::from_value::<PolicyArg>(serde_json::json!({"yearly": 1})).is_err());
    }
}
