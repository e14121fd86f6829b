//! Which output records are input records kept exactly as they came, so the guest can name them
//! by index instead of encoding them again (ABI.md, "Kept records").
//!
//! A pass-through or a filter hands back the records it was given; encoding their bytes again,
//! copying them out and decoding them on the host was most of such a plugin's cost. Rather than
//! ask plugin authors to mark kept records, the SDK recognises them by identity: decoding borrows
//! every key, value and header from the input buffer, so an output record whose bytes are the
//! very slices of input record `i` (same addresses and lengths), with `i`'s timestamp and no
//! topic of its own, is record `i` unchanged. Equal content at another address (a copy, a value
//! rebuilt by the plugin) is not recognised and is simply encoded in full: the test can say
//! "unchanged" wrongly only if the bytes themselves are the input's.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use crate::record::{Batch, Header, OutRecord, Record};

/// The identity of a nullable byte or text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ident {
    Null,
    /// Borrowed from the input: address and length.
    At(usize, usize),
    /// Owned (decoded from chunks): cannot be recognised, so records holding one never match.
    Unknown,
}

impl Ident {
    #[inline(always)]
    fn of_bytes(field: &Option<Cow<'_, [u8]>>) -> Ident {
        match field {
            None => Ident::Null,
            Some(Cow::Borrowed(b)) => Ident::At(b.as_ptr() as usize, b.len()),
            Some(Cow::Owned(_)) => Ident::Unknown,
        }
    }

    // The `Cow` itself, not the `str`: whether it borrows is the point.
    #[allow(clippy::ptr_arg)]
    fn of_text(field: &Cow<'_, str>) -> Ident {
        match field {
            Cow::Borrowed(s) => Ident::At(s.as_ptr() as usize, s.len()),
            Cow::Owned(_) => Ident::Unknown,
        }
    }

    /// Whether an output field with identity `self` is the input field `input`.
    #[inline(always)]
    fn is(self, input: Ident) -> bool {
        self == input && self != Ident::Unknown
    }
}

/// What identifies one input record.
#[derive(Debug, Clone, Copy)]
struct Fingerprint {
    timestamp: i64,
    key: Ident,
    value: Ident,
    /// Range of its headers in [`Inputs::headers`].
    headers: (u32, u32),
}

/// The identities of a batch's records, taken before the plugin consumes the batch. Buffers are
/// kept between calls (clear and refill), so recognising records allocates nothing once warm.
#[derive(Debug)]
pub(crate) struct Inputs {
    records: Vec<Fingerprint>,
    headers: Vec<(Ident, Ident)>,
    /// `(address of the value, or of the key when there is no value, index)` of every record
    /// with one, sorted by address (the order of the input buffer). Built at the first record
    /// the hint misses: a pass-through never needs it.
    by_address: Vec<(usize, u32)>,
    indexed: bool,
    /// Where the last match was: the next output record is most likely the one after it.
    next: u32,
}

impl Inputs {
    pub(crate) const fn new() -> Inputs {
        Inputs {
            records: Vec::new(),
            headers: Vec::new(),
            by_address: Vec::new(),
            indexed: false,
            next: 0,
        }
    }

    /// Takes the identities of `batch`'s records, replacing what was there.
    pub(crate) fn fill(&mut self, batch: &Batch<'_>) {
        self.clear();
        self.records.reserve(batch.records.len());
        for r in &batch.records {
            self.note(r);
        }
    }

    /// Forgets the last batch's records.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.headers.clear();
        self.by_address.clear();
        self.indexed = false;
        self.next = 0;
    }

    /// Takes the identity of the batch's next record (the decoder calls this as it goes, while
    /// the record's fields are at hand).
    #[inline(always)]
    pub(crate) fn note(&mut self, r: &Record<'_>) {
        let start = self.headers.len() as u32;
        if !r.headers.is_empty() {
            self.headers.extend(r.headers.iter().map(header_ident));
        }
        self.records.push(Fingerprint {
            timestamp: r.timestamp,
            key: Ident::of_bytes(&r.key),
            value: Ident::of_bytes(&r.value),
            headers: (start, self.headers.len() as u32),
        });
    }

    /// Builds [`Inputs::by_address`] once per batch.
    fn index(&mut self) {
        if core::mem::replace(&mut self.indexed, true) {
            return;
        }
        let addresses = self.records.iter().enumerate();
        self.by_address
            .extend(addresses.filter_map(|(index, f)| Some((f.address()?, index as u32))));
        // Borrowed fields follow each other in the input buffer, so the addresses ascend. Were
        // they not, the lookup would be wrong; records are then found by the hint alone.
        if !self.by_address.is_sorted() {
            self.by_address.clear();
        }
    }

    /// The index of the input record `out` is, unchanged, if it is one.
    pub(crate) fn find(&mut self, out: &OutRecord<'_>) -> Option<u32> {
        if out.topic.is_some() {
            return None;
        }
        let hinted = self.next;
        let index = if self.matches(hinted, out) {
            hinted
        } else {
            let value = Ident::of_bytes(&out.value);
            let address = match value {
                Ident::At(address, _) => address,
                _ => match Ident::of_bytes(&out.key) {
                    Ident::At(address, _) => address,
                    _ => return None,
                },
            };
            self.index();
            let at = self
                .by_address
                .binary_search_by_key(&address, |&(a, _)| a)
                .ok()?;
            let index = self.by_address[at].1;
            if !self.matches(index, out) {
                return None;
            }
            index
        };
        self.next = index + 1;
        Some(index)
    }

    #[inline(always)]
    fn matches(&self, index: u32, out: &OutRecord<'_>) -> bool {
        let Some(input) = self.records.get(index as usize) else {
            return false;
        };
        let (start, end) = input.headers;
        let headers = &self.headers[start as usize..end as usize];
        input.timestamp == out.timestamp
            && Ident::of_bytes(&out.key).is(input.key)
            && Ident::of_bytes(&out.value).is(input.value)
            && out.headers.len() == headers.len()
            && out.headers.iter().zip(headers).all(|(h, &(name, value))| {
                let (out_name, out_value) = header_ident(h);
                out_name.is(name) && out_value.is(value)
            })
    }
}

impl Fingerprint {
    fn address(&self) -> Option<usize> {
        match (self.value, self.key) {
            (Ident::At(address, _), _) | (_, Ident::At(address, _)) => Some(address),
            _ => None,
        }
    }
}

fn header_ident(h: &Header<'_>) -> (Ident, Ident) {
    (Ident::of_text(&h.name), Ident::of_bytes(&h.value))
}
