//! Data types, values and schemas.
//!
//! Every SQL type maps onto one `Value` variant: integers of every width are
//! `Int` (i64), `DECIMAL`/`FLOAT`/`DOUBLE` are `Double` (f64), strings are
//! `Str` (inline up to 24 bytes, so short keys never allocate), and
//! `TIMESTAMP` is `Ts`, milliseconds since the Unix epoch, UTC. `Null` is a
//! value of every type. `Value` has a total order and a hash so that it can
//! key group-by state; the order sorts NULL first and floats by
//! `f64::total_cmp`, which is what GROUP BY needs (NULLs form one group,
//! NaN equals itself), not what the SQL comparison operators do (those are
//! three-valued and live in `func`).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

pub use compact_str::CompactString as Str;

/// A SQL data type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    Int,
    Double,
    Str,
    Ts,
    /// The type of a bare `NULL` literal before it is coerced.
    Null,
}

impl DataType {
    /// The SQL spelling, as shown in errors and `EXPLAIN`.
    pub fn sql_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOLEAN",
            DataType::Int => "BIGINT",
            DataType::Double => "DOUBLE",
            DataType::Str => "VARCHAR",
            DataType::Ts => "TIMESTAMP",
            DataType::Null => "NULL",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, DataType::Int | DataType::Double | DataType::Null)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

/// One SQL value.
#[derive(Debug, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Double(f64),
    Str(Str),
    /// Milliseconds since 1970-01-01 00:00:00 UTC.
    Ts(i64),
}

// Layout fact the batch code relies on: a value is four words at most, so a
// row of ten columns fits in five cache lines.
const _: () = assert!(std::mem::size_of::<Value>() <= 32);

/// By hand, so that copying a number inlines into the row copies of
/// batches and exchanges: the derived `clone` took the string's clone in
/// with it and grew too large to inline, a call per value.
impl Clone for Value {
    #[inline(always)]
    fn clone(&self) -> Value {
        match self {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Int(i) => Value::Int(*i),
            Value::Double(d) => Value::Double(*d),
            Value::Ts(t) => Value::Ts(*t),
            Value::Str(s) => clone_str(s),
        }
    }
}

#[inline(never)]
fn clone_str(s: &Str) -> Value {
    Value::Str(s.clone())
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn data_type(&self) -> DataType {
        match self {
            Value::Null => DataType::Null,
            Value::Bool(_) => DataType::Bool,
            Value::Int(_) => DataType::Int,
            Value::Double(_) => DataType::Double,
            Value::Str(_) => DataType::Str,
            Value::Ts(_) => DataType::Ts,
        }
    }

    /// The value as f64 when it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(v) => Some(*v as f64),
            Value::Double(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(v) | Value::Ts(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn str(s: &str) -> Value {
        Value::Str(Str::new(s))
    }

    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Double(_) => 2,
            Value::Str(_) => 3,
            Value::Ts(_) => 4,
        }
    }
}

impl PartialEq for Value {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Key lookups compare like with like almost always: take those
        // without the total order's dispatch (same answers: the order
        // compares these variants the same way).
        match (self, other) {
            (Value::Int(a), Value::Int(b)) | (Value::Ts(a), Value::Ts(b)) => a == b,
            (Value::Str(a), Value::Str(b)) => a.as_str() == b.as_str(),
            _ => self.cmp(other) == Ordering::Equal,
        }
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    /// Total order for keys and sorting: NULL < BOOLEAN < numbers < strings
    /// < timestamps; integers and doubles compare numerically.
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Double(a), Value::Double(b)) => a.total_cmp(b),
            (Value::Int(a), Value::Double(b)) => (*a as f64).total_cmp(b),
            (Value::Double(a), Value::Int(b)) => a.total_cmp(&(*b as f64)),
            (Value::Str(a), Value::Str(b)) => a.as_str().cmp(b.as_str()),
            (Value::Ts(a), Value::Ts(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl Hash for Value {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Value::Null => state.write_u8(0),
            Value::Bool(b) => {
                state.write_u8(1);
                state.write_u8(*b as u8);
            }
            // Integers and integral doubles must hash alike because they
            // compare equal. Both hash as the integer: hashing the f64 bit
            // pattern instead would leave the low bits of small integers
            // zero, which FxHash keeps, and pile every key into one bucket.
            Value::Int(v) => {
                state.write_u8(2);
                state.write_i64(*v);
            }
            Value::Double(v) => {
                state.write_u8(2);
                let as_int = *v as i64;
                if as_int as f64 == *v && v.is_finite() {
                    state.write_i64(as_int); // also folds -0.0 into 0
                } else {
                    state.write_u64(v.to_bits());
                }
            }
            Value::Str(s) => {
                state.write_u8(3);
                state.write(s.as_bytes());
                state.write_u8(0xff);
            }
            Value::Ts(v) => {
                state.write_u8(4);
                state.write_i64(*v);
            }
        }
    }
}

/// A named, typed column.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
}

impl Field {
    pub fn new(name: impl Into<String>, data_type: DataType) -> Field {
        Field {
            name: name.into(),
            data_type,
            nullable: true,
        }
    }
}

/// The columns of a stream, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schema {
    pub fields: Vec<Field>,
}

impl Schema {
    pub fn new(fields: Vec<Field>) -> Schema {
        Schema { fields }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Column index by case-insensitive name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name.eq_ignore_ascii_case(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_and_double_keys_agree_on_equality_and_hash() {
        use std::hash::BuildHasher;
        let build = fxhash::FxBuildHasher::default();
        let a = Value::Int(3);
        let b = Value::Double(3.0);
        assert_eq!(a, b);
        assert_eq!(build.hash_one(&a), build.hash_one(&b));
        assert_eq!(build.hash_one(Value::Double(0.0)), build.hash_one(Value::Double(-0.0)));
    }

    #[test]
    fn null_sorts_first() {
        let mut v = vec![Value::Int(2), Value::Null, Value::Int(-1)];
        v.sort();
        assert_eq!(v, vec![Value::Null, Value::Int(-1), Value::Int(2)]);
    }
}
