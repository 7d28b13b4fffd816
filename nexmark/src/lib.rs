//! The deterministic Nexmark generator: people, auctions and bids in the
//! proportions and with the id structure of the standard model (Beam's
//! `NexmarkGenerator`, which Flink's and RisingWave's generators follow).
//!
//! The model: out of every 50 events, 1 is a new person, 3 are new
//! auctions and 46 are bids. Person and auction ids count up from 1000 in
//! event order, so the id of the latest person or auction is a pure
//! function of the event index. An auction's seller and a bid's bidder and
//! auction are picked either from a "hot" id (the first id of the latest
//! batch of 100, with probability 1 − 1/ratio) or uniformly from the
//! recently active ones, which is what gives the Nexmark queries their
//! skew. Event time advances by `1000 / rate_per_sec` ms per event.
//!
//! Every event is a pure function of `(seed, index)`: its random numbers
//! come from a SplitMix64 stream seeded by both. Any shard can therefore
//! generate any slice of the stream without coordination, and a rerun with
//! the same seed gives the same rows bit for bit (no floating point is
//! involved, so this holds across platforms too).
//!
//! Deviations from Beam, all deliberate: the "lead" that lets Beam pick ids
//! a few ahead of the newest is dropped, so every bid refers to an auction
//! and a person that already exist; strings are kept within 24 bytes so
//! they stay inline in `Str` (generation allocates nothing), which means
//! no padding `extra` to an average byte size; prices are log-uniform per
//! decade (an integer construction instead of `pow`); there are 10
//! categories.

use laminar_exec::types::{DataType, Field, Schema, Str, Value};

/// Events per proportion cycle and the share of each kind in it.
const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const BID_PROPORTION: u64 = 46;
const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;

const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const CATEGORIES: u64 = 10;

/// People that can still bid or sell, and auctions still likely open: the
/// window the non-hot choices draw from.
const ACTIVE_PEOPLE: u64 = 1000;
const IN_FLIGHT_AUCTIONS: u64 = 100;

/// A hot choice is made with probability 1 − 1/ratio.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_SELLERS_RATIO: u64 = 4;
/// The hot id is the first of the latest batch of this many ids.
const HOT_BATCH: u64 = 100;

/// One bid in this many uses a long-tail channel instead of a hot one.
const HOT_CHANNELS_RATIO: u64 = 100;
const CHANNELS: u64 = 10_000;
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://nexmark.io/googl",
    "https://nexmark.io/meta",
    "https://nexmark.io/bidu",
    "https://nexmark.io/aapl",
];
const URL_PREFIX: &str = "https://nexmark.io/";

const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// Longest string that `Str` keeps inline; every generated string fits.
const INLINE_BYTES_MAX: usize = 24;

/// 2015-07-15 00:00:00 UTC, the customary Nexmark epoch.
pub const DEFAULT_FIRST_EVENT_TIME_MS: i64 = 1_436_918_400_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NexmarkConfig {
    /// Seeds every random choice; the same seed gives the same events.
    pub seed: u64,
    /// Total events over all kinds; 0 = unbounded.
    pub events: u64,
    /// Events per second of event time (not wall time).
    pub rate_per_sec: u64,
    /// Event time of event 0.
    pub first_event_time_ms: i64,
}

impl Default for NexmarkConfig {
    fn default() -> NexmarkConfig {
        NexmarkConfig {
            seed: 0,
            events: 100_000,
            rate_per_sec: 10_000,
            first_event_time_ms: DEFAULT_FIRST_EVENT_TIME_MS,
        }
    }
}

/// The three Nexmark streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Person,
    Auction,
    Bid,
}

impl EventKind {
    /// Parses `person`, `auction` or `bid` (case-insensitive).
    pub fn from_name(name: &str) -> Option<EventKind> {
        [EventKind::Person, EventKind::Auction, EventKind::Bid]
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            EventKind::Person => "person",
            EventKind::Auction => "auction",
            EventKind::Bid => "bid",
        }
    }
}

/// The columns of a Nexmark stream, as the standard queries name them.
pub fn schema(kind: EventKind) -> Schema {
    use DataType::{Int, Str as Text, Ts};
    let columns: &[(&str, DataType)] = match kind {
        EventKind::Person => &[
            ("id", Int),
            ("name", Text),
            ("email_address", Text),
            ("credit_card", Text),
            ("city", Text),
            ("state", Text),
            ("date_time", Ts),
            ("extra", Text),
        ],
        EventKind::Auction => &[
            ("id", Int),
            ("item_name", Text),
            ("description", Text),
            ("initial_bid", Int),
            ("reserve", Int),
            ("date_time", Ts),
            ("expires", Ts),
            ("seller", Int),
            ("category", Int),
            ("extra", Text),
        ],
        EventKind::Bid => &[
            ("auction", Int),
            ("bidder", Int),
            ("price", Int),
            ("channel", Text),
            ("url", Text),
            ("date_time", Ts),
            ("extra", Text),
        ],
    };
    Schema::new(columns.iter().map(|(name, t)| Field::new(*name, *t)).collect())
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for
/// workload generation; one instance per event.
struct Rng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn for_event(seed: u64, index: u64) -> Rng {
        Rng {
            state: mix64(seed.wrapping_mul(GOLDEN_GAMMA) ^ mix64(index)),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..n` (0 when n is 0), by Lemire's multiply-shift.
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// Appends `min..=max` random lowercase letters. One random word yields
    /// eight letters: each is the integer part of the remaining fraction
    /// times 26 (about 4.7 bits a letter, plenty for workload text).
    fn letters(&mut self, min: usize, max: usize, out: &mut Text) {
        let len = min + self.below((max - min + 1) as u64) as usize;
        let mut fraction = 0;
        for n in 0..len {
            if n % 8 == 0 {
                fraction = self.next_u64();
            }
            let product = fraction as u128 * 26;
            out.push(b'a' + (product >> 64) as u8);
            fraction = product as u64;
        }
    }
}

/// A string under construction on the stack; `finish` copies it into an
/// inline `Str` once. Writes beyond `INLINE_BYTES_MAX` are dropped, which
/// the generator never attempts (a test checks that nothing allocates).
struct Text {
    bytes: [u8; INLINE_BYTES_MAX],
    len: usize,
}

impl Text {
    fn new() -> Text {
        Text {
            bytes: [0; INLINE_BYTES_MAX],
            len: 0,
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn push_str(&mut self, s: &str) {
        for &b in s.as_bytes() {
            self.push(b);
        }
    }

    fn finish(&self) -> Str {
        // Only ASCII is ever pushed, so this cannot fail.
        Str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

/// Generates Nexmark events by index.
#[derive(Debug, Clone)]
pub struct Generator {
    cfg: NexmarkConfig,
}

impl Generator {
    pub fn new(mut cfg: NexmarkConfig) -> Generator {
        // A rate of 0 would mean infinitely many events per millisecond.
        cfg.rate_per_sec = cfg.rate_per_sec.max(1);
        Generator { cfg }
    }

    pub fn config(&self) -> &NexmarkConfig {
        &self.cfg
    }

    /// The kind of event `i`: a fixed pattern repeating every 50 events.
    pub fn kind_of(i: u64) -> EventKind {
        let offset = i % TOTAL_PROPORTION;
        if offset < PERSON_PROPORTION {
            EventKind::Person
        } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
            EventKind::Auction
        } else {
            EventKind::Bid
        }
    }

    /// The first event index `>= i` of `kind` (so a source of one kind can
    /// step over the others without generating them).
    pub fn next_of_kind(i: u64, kind: EventKind) -> u64 {
        let offset = i % TOTAL_PROPORTION;
        let cycle = i - offset;
        let (first, last) = match kind {
            EventKind::Person => (0, PERSON_PROPORTION - 1),
            EventKind::Auction => (PERSON_PROPORTION, PERSON_PROPORTION + AUCTION_PROPORTION - 1),
            EventKind::Bid => (PERSON_PROPORTION + AUCTION_PROPORTION, TOTAL_PROPORTION - 1),
        };
        if offset < first {
            cycle.saturating_add(first)
        } else if offset <= last {
            i
        } else {
            cycle.saturating_add(TOTAL_PROPORTION + first)
        }
    }

    /// The last event index `< i` of `kind`, if there is one (where a
    /// source of one kind read from `i` on stands: its watermark is that
    /// event's time).
    pub fn last_of_kind_before(i: u64, kind: EventKind) -> Option<u64> {
        (i.saturating_sub(TOTAL_PROPORTION)..i)
            .rev()
            .find(|&j| Generator::kind_of(j) == kind)
    }

    /// Event time of event `i`: exact integer arithmetic, so the time of
    /// event i does not depend on how many events came before it.
    pub fn event_time_ms(&self, i: u64) -> i64 {
        let offset_ms = (i as u128 * 1000) / self.cfg.rate_per_sec as u128;
        self.cfg
            .first_event_time_ms
            .saturating_add(i64::try_from(offset_ms).unwrap_or(i64::MAX))
    }

    /// Whether event `i` exists (is below the configured total).
    pub fn contains(&self, i: u64) -> bool {
        self.cfg.events == 0 || i < self.cfg.events
    }

    /// Appends the row for event `i` if it is of `kind`; returns whether it
    /// was.
    #[inline]
    pub fn fill_row(&self, i: u64, kind: EventKind, out: &mut Vec<Value>) -> bool {
        self.fill_row_columns(i, kind, u64::MAX, out)
    }

    /// `fill_row` for a reader of some columns only: bit `c` of `wanted`
    /// set for each column `c` it reads. A bid's unread text columns are
    /// NULL, and not built (the random draws they take are still made, so
    /// every other value is the same).
    #[inline]
    pub fn fill_row_columns(&self, i: u64, kind: EventKind, wanted: u64, out: &mut Vec<Value>) -> bool {
        if Generator::kind_of(i) != kind {
            return false;
        }
        let mut rng = Rng::for_event(self.cfg.seed, i);
        let time = self.event_time_ms(i);
        match kind {
            EventKind::Person => person(i, time, &mut rng, out),
            EventKind::Auction => self.auction(i, time, &mut rng, out),
            EventKind::Bid => bid(i, time, &mut rng, wanted, out),
        }
        true
    }

    /// Appends the row of event `i`, whatever its kind, and returns the kind.
    pub fn fill_event(&self, i: u64, out: &mut Vec<Value>) -> EventKind {
        let kind = Generator::kind_of(i);
        self.fill_row(i, kind, out);
        kind
    }

    fn auction(&self, i: u64, time: i64, rng: &mut Rng, out: &mut Vec<Value>) {
        let id = last_base0_auction_id(i) as i64 + FIRST_AUCTION_ID;
        let mut item_name = Text::new();
        rng.letters(3, 20, &mut item_name);
        let mut description = Text::new();
        rng.letters(3, 10, &mut description);
        description.push(b' ');
        rng.letters(3, 12, &mut description);
        let initial_bid = price(rng);
        let reserve = initial_bid + price(rng);
        // Auctions last, on average, until IN_FLIGHT_AUCTIONS more auctions
        // have been created, as in the model: at high event rates they are
        // short, and the in-flight set stays the same size.
        let horizon_events = IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
        let horizon_ms = self
            .event_time_ms(i.saturating_add(horizon_events))
            .saturating_sub(time)
            .max(0) as u64;
        let expires = time.saturating_add(1 + rng.below((horizon_ms * 2).max(1)) as i64);
        let seller = if rng.below(HOT_SELLERS_RATIO) > 0 {
            last_base0_person_id(i) / HOT_BATCH * HOT_BATCH
        } else {
            next_base0_person_id(i, rng)
        } as i64
            + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + rng.below(CATEGORIES) as i64;
        let mut extra = Text::new();
        rng.letters(0, 8, &mut extra);
        out.extend([
            Value::Int(id),
            Value::Str(item_name.finish()),
            Value::Str(description.finish()),
            Value::Int(initial_bid),
            Value::Int(reserve),
            Value::Ts(time),
            Value::Ts(expires),
            Value::Int(seller),
            Value::Int(category),
            Value::Str(extra.finish()),
        ]);
    }
}

fn person(i: u64, time: i64, rng: &mut Rng, out: &mut Vec<Value>) {
    let id = last_base0_person_id(i) as i64 + FIRST_PERSON_ID;
    let mut name = Text::new();
    name.push_str(rng.pick(&FIRST_NAMES));
    name.push(b' ');
    name.push_str(rng.pick(&LAST_NAMES));
    let mut email = Text::new();
    rng.letters(3, 7, &mut email);
    email.push(b'@');
    rng.letters(3, 5, &mut email);
    email.push_str(".com");
    let mut credit_card = Text::new();
    // Sixteen digits from one random number, in groups of four.
    let number = rng.below(10_000_000_000_000_000);
    for position in (0..16).rev() {
        credit_card.push(b'0' + (number / 10u64.pow(position) % 10) as u8);
        if position % 4 == 0 && position > 0 {
            credit_card.push(b' ');
        }
    }
    let city = Str::new(rng.pick(&CITIES));
    let state = Str::new(rng.pick(&STATES));
    let mut extra = Text::new();
    rng.letters(0, 8, &mut extra);
    out.extend([
        Value::Int(id),
        Value::Str(name.finish()),
        Value::Str(email.finish()),
        Value::Str(credit_card.finish()),
        Value::Str(city),
        Value::Str(state),
        Value::Ts(time),
        Value::Str(extra.finish()),
    ]);
}

/// Bid columns whose text `bid` builds only when wanted.
const BID_CHANNEL: u64 = 1 << 3;
const BID_URL: u64 = 1 << 4;
const BID_EXTRA: u64 = 1 << 6;

#[inline]
fn bid(i: u64, time: i64, rng: &mut Rng, wanted: u64, out: &mut Vec<Value>) {
    let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
        last_base0_auction_id(i) / HOT_BATCH * HOT_BATCH
    } else {
        next_base0_auction_id(i, rng)
    } as i64
        + FIRST_AUCTION_ID;
    let bidder = if rng.below(HOT_BIDDERS_RATIO) > 0 {
        // The second person of the batch, so that hot bidders and hot
        // sellers differ; early on, before it exists, the first.
        let last = last_base0_person_id(i);
        (last / HOT_BATCH * HOT_BATCH + 1).min(last)
    } else {
        next_base0_person_id(i, rng)
    } as i64
        + FIRST_PERSON_ID;
    let price = price(rng);
    // Each event has its own generator (`Rng::for_event`) and the text
    // columns are drawn last: when none is read, their draws are skipped
    // too, and nothing else changes.
    if wanted & (BID_CHANNEL | BID_URL | BID_EXTRA) == 0 {
        out.reserve(7);
        out.push(Value::Int(auction));
        out.push(Value::Int(bidder));
        out.push(Value::Int(price));
        out.push(Value::Null);
        out.push(Value::Null);
        out.push(Value::Ts(time));
        out.push(Value::Null);
        return;
    }
    let (channel, url) = if rng.below(HOT_CHANNELS_RATIO) == 0 {
        // A long-tail channel; its url is a function of the channel, as
        // in the model's channel cache.
        let number = rng.below(CHANNELS);
        let channel = match wanted & BID_CHANNEL {
            0 => Value::Null,
            _ => {
                let mut channel = Text::new();
                channel.push_str("channel-");
                push_decimal(number, &mut channel);
                Value::Str(channel.finish())
            }
        };
        let url = match wanted & BID_URL {
            0 => Value::Null,
            _ => {
                let mut url = Text::new();
                url.push_str(URL_PREFIX);
                let mut h = mix64(number);
                for _ in 0..INLINE_BYTES_MAX - URL_PREFIX.len() {
                    url.push(b'a' + (h % 26) as u8);
                    h /= 26;
                }
                Value::Str(url.finish())
            }
        };
        (channel, url)
    } else {
        let hot = rng.below(HOT_CHANNELS.len() as u64) as usize;
        (
            match wanted & BID_CHANNEL {
                0 => Value::Null,
                _ => Value::Str(Str::new(HOT_CHANNELS[hot])),
            },
            match wanted & BID_URL {
                0 => Value::Null,
                _ => Value::Str(Str::new(HOT_URLS[hot])),
            },
        )
    };
    let extra = match wanted & BID_EXTRA {
        // The event's last draws: nothing after depends on them.
        0 => Value::Null,
        _ => {
            let mut extra = Text::new();
            rng.letters(0, 8, &mut extra);
            Value::Str(extra.finish())
        }
    };
    // Pushed one by one: extending from an array built first copied the
    // whole row once more (a twentieth of q5's time).
    out.reserve(7);
    out.push(Value::Int(auction));
    out.push(Value::Int(bidder));
    out.push(Value::Int(price));
    out.push(channel);
    out.push(url);
    out.push(Value::Ts(time));
    out.push(extra);
}

fn push_decimal(mut n: u64, out: &mut Text) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in digits[..len].iter().rev() {
        out.push(d);
    }
}

/// A price in cents, log-uniform over six decades from 1.00 to 999,999.00:
/// a random decade times a uniform mantissa.
fn price(rng: &mut Rng) -> i64 {
    let decade = 10i64.pow(rng.below(6) as u32);
    decade * (100 + rng.below(900) as i64)
}

/// Base-0 id of the latest person created at or before event `i`.
fn last_base0_person_id(i: u64) -> u64 {
    let cycle = i / TOTAL_PROPORTION;
    let offset = i % TOTAL_PROPORTION;
    // Past the cycle's people, the latest person is the cycle's last one.
    let person_in_cycle = if offset < PERSON_PROPORTION {
        offset
    } else {
        PERSON_PROPORTION - 1
    };
    cycle * PERSON_PROPORTION + person_in_cycle
}

/// Base-0 id of the latest auction created at or before event `i`. Only
/// called for auctions and bids, which the first auction precedes.
fn last_base0_auction_id(i: u64) -> u64 {
    let cycle = i / TOTAL_PROPORTION;
    let offset = i % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        // A person event: the latest auction is the last of the previous cycle.
        (cycle * AUCTION_PROPORTION).saturating_sub(1)
    } else {
        cycle * AUCTION_PROPORTION + (offset - PERSON_PROPORTION).min(AUCTION_PROPORTION - 1)
    }
}

/// A person among the most recent `ACTIVE_PEOPLE`, uniformly.
fn next_base0_person_id(i: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person_id(i) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.below(active)
}

/// An auction among the latest `IN_FLIGHT_AUCTIONS` + 1, uniformly.
fn next_base0_auction_id(i: u64, rng: &mut Rng) -> u64 {
    let max = last_base0_auction_id(i);
    let min = max.saturating_sub(IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bid_generated_for_some_columns_has_their_values() {
        let g = Generator::new(NexmarkConfig::default());
        let (mut full, mut some) = (Vec::new(), Vec::new());
        // Auction, price and time only; then every column but one text.
        for wanted in [1u64 | 1 << 2 | 1 << 5, !BID_CHANNEL, !BID_URL, !BID_EXTRA, u64::MAX] {
            for i in 0..20_000u64 {
                full.clear();
                some.clear();
                let kind = Generator::kind_of(i);
                assert!(g.fill_row(i, kind, &mut full));
                assert!(g.fill_row_columns(i, kind, wanted, &mut some));
                assert_eq!(full.len(), some.len());
                for (c, (f, s)) in full.iter().zip(&some).enumerate() {
                    if wanted & (1 << c) != 0 || kind != EventKind::Bid {
                        assert_eq!(f, s, "event {i} column {c}");
                    }
                }
            }
        }
    }

    fn rows(generator: &Generator, kind: EventKind, events: u64) -> Vec<Vec<Value>> {
        let mut rows = Vec::new();
        for i in 0..events {
            let mut row = Vec::new();
            if generator.fill_row(i, kind, &mut row) {
                rows.push(row);
            } else {
                assert!(row.is_empty());
            }
        }
        rows
    }

    fn int(v: &Value) -> i64 {
        v.as_i64().expect("an integer column")
    }

    #[test]
    fn same_seed_same_rows_different_seed_different_rows() {
        let a = Generator::new(NexmarkConfig {
            seed: 7,
            ..NexmarkConfig::default()
        });
        let b = Generator::new(NexmarkConfig {
            seed: 7,
            ..NexmarkConfig::default()
        });
        let c = Generator::new(NexmarkConfig {
            seed: 8,
            ..NexmarkConfig::default()
        });
        for kind in [EventKind::Person, EventKind::Auction, EventKind::Bid] {
            assert_eq!(rows(&a, kind, 5_000), rows(&b, kind, 5_000));
            assert_ne!(rows(&a, kind, 5_000), rows(&c, kind, 5_000));
        }
        // Event i does not depend on what was generated before it.
        let mut late = Vec::new();
        assert_eq!(a.fill_event(4_321, &mut late), EventKind::Bid);
        assert_eq!(late, rows(&a, EventKind::Bid, 4_322).pop().unwrap());
    }

    #[test]
    fn proportions_are_exactly_1_3_46() {
        let g = Generator::new(NexmarkConfig::default());
        assert_eq!(rows(&g, EventKind::Person, 50_000).len(), 1_000);
        assert_eq!(rows(&g, EventKind::Auction, 50_000).len(), 3_000);
        assert_eq!(rows(&g, EventKind::Bid, 50_000).len(), 46_000);
    }

    #[test]
    fn next_of_kind_agrees_with_kind_of() {
        for i in 0..200 {
            for kind in [EventKind::Person, EventKind::Auction, EventKind::Bid] {
                let want = (i..).find(|&j| Generator::kind_of(j) == kind).unwrap();
                assert_eq!(Generator::next_of_kind(i, kind), want, "i {i} {kind:?}");
            }
        }
        for i in 0..200 {
            for kind in [EventKind::Person, EventKind::Auction, EventKind::Bid] {
                let want = (0..i).rev().find(|&j| Generator::kind_of(j) == kind);
                assert_eq!(Generator::last_of_kind_before(i, kind), want, "i {i} {kind:?}");
            }
        }
        assert_eq!(EventKind::from_name("BID"), Some(EventKind::Bid));
        assert_eq!(EventKind::from_name("people"), None);
    }

    /// Walks the stream in event order and checks that ids are sequential
    /// and that every reference is to a person or auction already created.
    #[test]
    fn references_point_at_existing_ids() {
        let g = Generator::new(NexmarkConfig {
            seed: 3,
            ..NexmarkConfig::default()
        });
        let (mut next_person, mut next_auction) = (FIRST_PERSON_ID, FIRST_AUCTION_ID);
        for i in 0..60_000 {
            let mut row = Vec::new();
            match g.fill_event(i, &mut row) {
                EventKind::Person => {
                    assert_eq!(int(&row[0]), next_person);
                    next_person += 1;
                }
                EventKind::Auction => {
                    assert_eq!(int(&row[0]), next_auction);
                    next_auction += 1;
                    let seller = int(&row[7]);
                    assert!(
                        (FIRST_PERSON_ID..next_person).contains(&seller),
                        "event {i}: seller {seller}"
                    );
                    assert!(int(&row[4]) > int(&row[3]), "reserve above the initial bid");
                    assert!(int(&row[6]) > int(&row[5]), "expires after creation");
                    assert!((10..20).contains(&int(&row[8])));
                }
                EventKind::Bid => {
                    let (auction, bidder) = (int(&row[0]), int(&row[1]));
                    assert!(
                        (FIRST_AUCTION_ID..next_auction).contains(&auction),
                        "event {i}: auction {auction}"
                    );
                    assert!(
                        (FIRST_PERSON_ID..next_person).contains(&bidder),
                        "event {i}: bidder {bidder}"
                    );
                    assert!((100..1_000_000_000).contains(&int(&row[2])));
                }
            }
        }
    }

    #[test]
    fn event_times_advance_at_the_configured_rate() {
        let g = Generator::new(NexmarkConfig::default());
        assert_eq!(g.event_time_ms(0), DEFAULT_FIRST_EVENT_TIME_MS);
        assert_eq!(g.event_time_ms(9), DEFAULT_FIRST_EVENT_TIME_MS);
        assert_eq!(g.event_time_ms(10), DEFAULT_FIRST_EVENT_TIME_MS + 1);
        assert_eq!(g.event_time_ms(10_000), DEFAULT_FIRST_EVENT_TIME_MS + 1_000);
        let mut previous = i64::MIN;
        for i in 0..20_000 {
            let mut row = Vec::new();
            let kind = g.fill_event(i, &mut row);
            let time_column = schema(kind).index_of("date_time").unwrap();
            let time = row[time_column].as_i64().unwrap();
            assert_eq!(time, g.event_time_ms(i));
            assert!(time >= previous);
            previous = time;
        }
        let slow = Generator::new(NexmarkConfig {
            rate_per_sec: 3,
            first_event_time_ms: 0,
            ..NexmarkConfig::default()
        });
        assert_eq!([1, 2, 3, 4].map(|i| slow.event_time_ms(i)), [333, 666, 1000, 1333]);
        let huge = Generator::new(NexmarkConfig {
            rate_per_sec: 0,
            ..NexmarkConfig::default()
        });
        assert_eq!(huge.event_time_ms(u64::MAX), i64::MAX);
        assert!(huge.contains(99_999) && !huge.contains(100_000));
    }

    /// With hot ratios 2 and 4, about 1/2 of bids go to the hot auction
    /// and 3/4 come from the hot bidder (a bit more: the uniform choice
    /// can land on the hot id too).
    #[test]
    fn hot_auctions_and_bidders_get_their_share() {
        let g = Generator::new(NexmarkConfig {
            seed: 11,
            ..NexmarkConfig::default()
        });
        let (mut bids, mut hot_auction, mut hot_bidder) = (0, 0, 0);
        for i in 0..100_000 {
            let mut row = Vec::new();
            if !g.fill_row(i, EventKind::Bid, &mut row) {
                continue;
            }
            bids += 1;
            let hot_auction_id = (last_base0_auction_id(i) / HOT_BATCH * HOT_BATCH) as i64 + FIRST_AUCTION_ID;
            hot_auction += (int(&row[0]) == hot_auction_id) as u32;
            let last_person = last_base0_person_id(i);
            let hot_bidder_id = (last_person / HOT_BATCH * HOT_BATCH + 1).min(last_person) as i64 + FIRST_PERSON_ID;
            hot_bidder += (int(&row[1]) == hot_bidder_id) as u32;
        }
        let auction_share = hot_auction as f64 / bids as f64;
        let bidder_share = hot_bidder as f64 / bids as f64;
        assert!(
            (0.49..0.56).contains(&auction_share),
            "hot auction share {auction_share}"
        );
        assert!((0.74..0.80).contains(&bidder_share), "hot bidder share {bidder_share}");
    }

    #[test]
    fn rows_match_the_schema_and_strings_stay_inline() {
        let g = Generator::new(NexmarkConfig::default());
        let mut channels = std::collections::HashMap::new();
        for i in 0..50_000 {
            let mut row = Vec::new();
            let kind = g.fill_event(i, &mut row);
            let schema = schema(kind);
            assert_eq!(row.len(), schema.len());
            for (value, field) in row.iter().zip(&schema.fields) {
                assert_eq!(value.data_type(), field.data_type, "{kind:?}.{}", field.name);
                if let Value::Str(s) = value {
                    assert!(!s.is_heap_allocated(), "{kind:?}.{} = {s:?} allocated", field.name);
                }
            }
            if kind == EventKind::Bid {
                let (channel, url) = (
                    row[3].as_str().unwrap().to_string(),
                    row[4].as_str().unwrap().to_string(),
                );
                assert_eq!(
                    channels.entry(channel.clone()).or_insert_with(|| url.clone()),
                    &url,
                    "{channel}"
                );
            }
        }
        assert!(channels.len() > 4, "long-tail channels appear");
    }
}
