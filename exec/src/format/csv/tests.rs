//! Tests of the CSV decoder and encoder: fields, quoting, errors,
//! projections, and the one-pass decoder against the record-by-record one.

use super::*;

use crate::format::fixtures::{field, sample_schema as schema};

fn decode(d: &mut CsvDecoder, line: &str) -> Result<Vec<Value>, String> {
    crate::format::fixtures::decode_checked(d, line)
}

/// The message of the error decoding `record` gives.
fn explained(d: &mut CsvDecoder, record: &[u8]) -> String {
    let e = d.decode(record, &mut Vec::new()).unwrap_err();
    d.explain(record, e)
}

#[test]
fn decodes_every_type_with_trimming_and_nulls() {
    let mut d = CsvDecoder::new(&schema(), None, b',').unwrap();
    assert_eq!(
        decode(&mut d, " 42 ,1.5e3, Yes , spaced ,2015-07-15 00:00:00.123").unwrap(),
        vec![
            Value::Int(42),
            Value::Double(1500.0),
            Value::Bool(true),
            Value::str(" spaced "),
            Value::Ts(1_436_918_400_123)
        ]
    );
    assert_eq!(
        decode(&mut d, "-9223372036854775808,,,,1436918400123").unwrap(),
        vec![
            Value::Int(i64::MIN),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Ts(1_436_918_400_123)
        ]
    );
    // A quoted empty field is the empty string for VARCHAR, NULL otherwise.
    assert_eq!(
        decode(&mut d, "+1,\"\",\"\",\"\",   ").unwrap(),
        vec![Value::Int(1), Value::Null, Value::Null, Value::str(""), Value::Null]
    );
    assert_eq!(decode(&mut d, "1,inf,F,x,").unwrap()[1], Value::Double(f64::INFINITY));
    assert_eq!(decode(&mut d, "1,NaN,no,x,").unwrap()[2], Value::Bool(false));
}

#[test]
fn quoted_fields_hold_delimiters_quotes_and_newlines() {
    let mut d = CsvDecoder::new(&schema(), None, b',').unwrap();
    let row = decode(&mut d, "\"7\",\"2\",\"1\",\"a,\"\"b\"\"\nc\" ,").unwrap();
    assert_eq!(row[0], Value::Int(7));
    assert_eq!(row[3], Value::str("a,\"b\"\nc"));
    // A quote inside an unquoted field is a literal character.
    assert_eq!(decode(&mut d, "7,,,5\" pipe,").unwrap()[3], Value::str("5\" pipe"));
}

#[test]
fn every_error_names_the_column_and_the_reason() {
    let mut d = CsvDecoder::new(&schema(), None, b',').unwrap();
    let cases = [
        ("1,2,t,x", "expected 5 fields, found 4"),
        ("1,2,t,x,,", "expected 5 fields, found 6"),
        ("12x,,,,", "column 'auction' (BIGINT): invalid integer \"12x\""),
        ("1.5,,,,", "column 'auction' (BIGINT): invalid integer \"1.5\""),
        ("-,,,,", "column 'auction' (BIGINT): invalid integer \"-\""),
        (
            "99999999999999999999,,,,",
            "column 'auction' (BIGINT): integer out of range \"99999999999999999999\"",
        ),
        (
            "9999999999999999999x,,,,",
            "column 'auction' (BIGINT): invalid integer \"9999999999999999999x\"",
        ),
        (",,,,", "column 'auction' is NOT NULL but the value is empty"),
        ("  ,,,,", "column 'auction' is NOT NULL but the value is empty"),
        ("1,1.2.3,,,", "column 'price' (DOUBLE): invalid number \"1.2.3\""),
        (
            "1,,maybe,,",
            "column 'ok' (BOOLEAN): invalid boolean \"maybe\" (expected true/false, t/f, 1/0 or yes/no)",
        ),
        ("1,,,\"abc,", "field 4: unterminated quoted field"),
        ("1,,,\"abc\"d,", "field 4: unexpected character after the closing quote"),
        // The message quotes a quoted field's text unescaped and trimmed.
        (
            "1,,\" ma\"\"ybe \" ,,",
            "column 'ok' (BOOLEAN): invalid boolean \"ma\\\"ybe\" (expected true/false, t/f, 1/0 or yes/no)",
        ),
        ("\"1x\",,,,", "column 'auction' (BIGINT): invalid integer \"1x\""),
    ];
    for (line, want) in cases {
        assert_eq!(decode(&mut d, line).unwrap_err(), want, "line {line:?}");
    }
    let ts_err = decode(&mut d, "1,,,,yesterday").unwrap_err();
    assert!(
        ts_err.starts_with("column 'ts' (TIMESTAMP): invalid timestamp \"yesterday\""),
        "{ts_err}"
    );
    let long = format!("1,,,,{}", "9".repeat(100));
    let long_err = decode(&mut d, &long).unwrap_err();
    assert!(
        long_err.starts_with("column 'ts' (TIMESTAMP): invalid timestamp \"9999"),
        "{long_err}"
    );
    assert!(long_err.len() < 120, "error text is bounded: {long_err}");
    let mut bad_utf8 = b"1,,,".to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.push(b',');
    let mut out = Vec::new();
    assert!(d.decode(&bad_utf8, &mut out).is_err());
    assert!(out.is_empty());
    assert_eq!(explained(&mut d, &bad_utf8), "column 'name' (VARCHAR): invalid UTF-8");
}

#[test]
fn refuses_records_wider_than_the_limit() {
    let mut d = CsvDecoder::new(&schema(), None, b',').unwrap();
    let wide = ",".repeat(RECORD_FIELDS_MAX);
    assert_eq!(
        decode(&mut d, &wide).unwrap_err(),
        format!("record has more than {RECORD_FIELDS_MAX} fields")
    );
    let just_under = ",".repeat(RECORD_FIELDS_MAX - 1);
    assert_eq!(
        decode(&mut d, &just_under).unwrap_err(),
        format!("expected 5 fields, found {RECORD_FIELDS_MAX}")
    );
}

#[test]
fn header_maps_columns_by_name() {
    let header = b"\xEF\xBB\xBFTS;extra;\"Name\";ok;price;AUCTION";
    let mut d = CsvDecoder::new(&schema(), Some(header), b';').unwrap();
    assert_eq!(d.fields_expected(), 6);
    assert_eq!(
        decode(&mut d, "0;ignored;bob;1;2.5;9").unwrap(),
        vec![
            Value::Int(9),
            Value::Double(2.5),
            Value::Bool(true),
            Value::str("bob"),
            Value::Ts(0)
        ]
    );
    assert_eq!(
        decode(&mut d, "0;x;bob;1;2.5").unwrap_err(),
        "expected 6 fields, found 5"
    );
    let err = CsvDecoder::new(&schema(), Some(b"auction,price,ok,ts"), b',').unwrap_err();
    assert_eq!(
        err.to_string(),
        "header has no column 'name' (columns: auction, price, ok, ts)"
    );
    assert_eq!(
        CsvDecoder::new(&schema(), None, b'"').unwrap_err().to_string(),
        "invalid CSV delimiter '\"'"
    );
    assert_eq!(
        CsvDecoder::new(&schema(), Some(b"\"auction"), b',')
            .unwrap_err()
            .to_string(),
        "header: field 1: unterminated quoted field"
    );
}

#[test]
fn projection_skips_unused_columns_without_parsing() {
    let mut d = CsvDecoder::new(&schema(), None, b',')
        .unwrap()
        .with_projection(&[true, false, false, true, false]);
    assert_eq!(
        decode(&mut d, "5,not a number,maybe,kept,never").unwrap(),
        vec![Value::Int(5), Value::Null, Value::Null, Value::str("kept"), Value::Null]
    );
}

#[test]
fn checking_unused_columns_refuses_what_projection_skips() {
    // auction (NOT NULL) is unused here; the rows keep only name.
    let mut d = CsvDecoder::new(&schema(), None, b',')
        .unwrap()
        .with_projection(&[false, false, false, true, false])
        .compact()
        .checking_unused();
    assert_eq!(
        decode(&mut d, "5,1.5,true,kept,2020-01-01 00:00:00").unwrap(),
        vec![Value::str("kept")]
    );
    for (bad, why) in [
        ("5,not a number,true,x,", "price"),
        (",1.5,true,x,", "auction"),
        ("5,1.5,maybe,x,", "ok"),
        ("5,1.5,true,x,yesterday", "ts"),
        ("\"5\",1.5,true,x,never", "ts"),
    ] {
        let e = decode(&mut d, bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    // Invalid UTF-8 in an unused string column is refused too; an
    // empty quoted one is the empty string, not NULL.
    let mut d = CsvDecoder::new(&schema(), None, b',')
        .unwrap()
        .with_projection(&[true, false, false, false, false])
        .checking_unused();
    let mut out = Vec::new();
    assert!(d.decode(b"5,1.5,true,\xff,", &mut out).is_err());
    assert!(out.is_empty());
    assert!(d.decode(b"5,1.5,true,\"\",", &mut out).is_ok());
}

#[test]
fn incomplete_records_follow_the_quoting_rules() {
    assert!(!csv_record_incomplete(b""));
    assert!(!csv_record_incomplete(b"a,b"));
    assert!(csv_record_incomplete(b"a,\"b"));
    assert!(csv_record_incomplete(b"a,\"b\"\"c"));
    assert!(!csv_record_incomplete(b"a,\"b\"\"c\""));
    assert!(!csv_record_incomplete(b"a,5\" pipe"));
    assert!(csv_record_incomplete(b"\"x\ny,"));
    assert!(csv_record_incomplete_with(b"a;\"b,", b';'));
    assert!(!csv_record_incomplete_with(b"a;b\"", b';'));
}

#[test]
fn encoder_quotes_only_when_needed() {
    let schema = Schema::new(vec![
        field("a", DataType::Str, true),
        field("b c", DataType::Str, true),
        field("n", DataType::Int, true),
        field("d", DataType::Double, true),
        field("t", DataType::Ts, true),
        field("f", DataType::Bool, true),
    ]);
    let mut e = CsvEncoder::new(&schema, true);
    let mut out = Vec::new();
    e.header(&mut out);
    e.row(
        Op::UpdateBefore,
        &[
            Value::str("plain"),
            Value::str("a,b"),
            Value::Int(-12),
            Value::Double(0.1),
            Value::Ts(1_436_918_400_123),
            Value::Bool(true),
        ],
        &mut out,
    );
    e.row(
        Op::Insert,
        &[
            Value::str(""),
            Value::str("say \"hi\""),
            Value::Null,
            Value::Double(1e21),
            Value::Null,
            Value::Null,
        ],
        &mut out,
    );
    e.row(
        Op::Delete,
        &[
            Value::str(" x"),
            Value::str("a\r\nb"),
            Value::Null,
            Value::Null,
            Value::Ts(-1),
            Value::Null,
        ],
        &mut out,
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "op,a,b c,n,d,t,f\n\
         -U,plain,\"a,b\",-12,0.1,2015-07-15 00:00:00.123,true\n\
         +I,\"\",\"say \"\"hi\"\"\",,1e+21,,\n\
         -D,\" x\",\"a\r\nb\",,,1969-12-31 23:59:59.999,\n"
    );
    let mut plain = Vec::new();
    CsvEncoder::new(&schema, false).with_delimiter(b'|').header(&mut plain);
    assert_eq!(plain, b"a|b c|n|d|t|f\n");
}

mod one_pass_tests {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// The one-pass decoder and the span decoder agree on every record
        /// without a quote: the same row, or the same error, whatever the
        /// projection and compaction.
        #[test]
        fn one_pass_and_spans_agree(
            record in prop::collection::vec(prop::sample::select(b"0123456789,,,,-x :.T\t".to_vec()), 0..60),
            used in prop::collection::vec(any::<bool>(), 5),
            compact in any::<bool>(),
        ) {
            let schema = Schema::new(vec![
                Field::new("i", DataType::Int),
                Field::new("d", DataType::Double),
                Field::new("b", DataType::Bool),
                Field { nullable: false, ..Field::new("s", DataType::Str) },
                Field::new("t", DataType::Ts),
            ]);
            let mut d = CsvDecoder::new(&schema, None, b',').unwrap().with_projection(&used);
            if compact {
                d = d.compact();
            }
            let (mut one, mut spans) = (vec![Value::Int(7)], vec![Value::Int(7)]);
            let a = d.decode_unquoted(&record, &mut one).expect("no quote");
            let b = d.decode_spans(&record, &mut spans);
            prop_assert_eq!(a, b);
            prop_assert_eq!(one, spans);
        }

        /// Eight digits at once read exactly what the digit loop reads,
        /// for any bytes around and in the field.
        #[test]
        fn digits_at_once_agree_with_the_loop(
            buf in prop::collection::vec(prop::sample::select(b"0123456789/:x \x80\xff".to_vec()), 0..24),
            from in 0usize..24,
            len in 0usize..12,
        ) {
            let from = from.min(buf.len());
            let to = (from + len).min(buf.len());
            prop_assert_eq!(plain_digits_at(&buf, from, to), plain_digits(&buf[from..to]));
        }

        /// The one-pass `decode_lines` gives what decoding line by line
        /// gives (the trait's default): rows, batches, line numbers,
        /// refusals (too long, too many or too few fields, bad values) and
        /// the time column's maximum.
        #[test]
        fn decode_lines_agrees_with_line_by_line(
            lines in prop::collection::vec(
                (
                    prop::collection::vec(
                        prop::sample::select(vec![
                            "2015-07-15 00:00:01.250", "2015-07-16 23:59:59", " 2015-07-15 00:00:02.000", "2015-02-30 00:00:00",
                            "12", "-3", " 4 ", "", "x", "1.5", "true", "999999999999999999", "9999999999999999999",
                            "é", "naïve",
                        ]),
                        0..7,
                    ),
                    prop::sample::select(vec!["\n", "\r\n", "\r"]),
                ),
                0..12,
            ),
            trailing in any::<bool>(),
            used in prop::collection::vec(any::<bool>(), 5),
            compact in any::<bool>(),
            check in any::<bool>(),
            batch_rows in 1usize..4,
        ) {
            let schema = Schema::new(vec![
                Field::new("i", DataType::Int),
                Field::new("t", DataType::Ts),
                Field::new("b", DataType::Bool),
                Field { nullable: false, ..Field::new("s", DataType::Str) },
                Field::new("n", DataType::Int),
            ]);
            let mut buf = String::new();
            for (fields, end) in &lines {
                buf.push_str(&fields.join(","));
                buf.push_str(end);
            }
            if !trailing && buf.ends_with('\n') {
                buf.pop();
            }
            let mut d = CsvDecoder::new(&schema, None, b',').unwrap().with_projection(&used);
            if compact {
                d = d.compact();
            }
            if check {
                d = d.checking_unused();
            }
            let time = used[1].then_some(if compact { usize::from(used[0]) } else { 1 });
            let width = d.width;
            struct LineByLine<'a>(&'a mut CsvDecoder);
            impl Decoder for LineByLine<'_> {
                fn decode(&mut self, record: &[u8], out: &mut Vec<Value>) -> Result<(), DecodeError> {
                    self.0.decode(record, out)
                }

                fn explain(&self, record: &[u8], error: DecodeError) -> String {
                    self.0.explain(record, error)
                }
            }
            let run = |d: &mut dyn Decoder| {
                let mut out = Lines::new(width, batch_rows, time, 60);
                d.decode_lines(buf.as_bytes(), &mut out);
                let batches: Vec<Vec<Vec<Value>>> =
                    out.batches.iter().map(|b| b.rows().map(|(_, r)| r.to_vec()).collect()).collect();
                (batches, out.lines, out.rows, out.max_time, out.advances, out.bad)
            };
            let one_pass = run(&mut d.clone());
            let by_line = run(&mut LineByLine(&mut d));
            prop_assert_eq!(one_pass, by_line);
        }
    }
}
