//! `laminar explain`: the plan as a reader checks it. Sources with their
//! connector, columns and watermark; each operator with its keys,
//! aggregates, window, emit mode, lateness, join kind and condition as SQL
//! over its input's column names, and where it runs over the shards; each
//! sink with where it writes.
//!
//! It spells out every literal and option, so two plans that explain
//! alike compute alike. A state directory does not go by this text: it
//! matches state by the identities of `identity.rs`.

use std::fmt::Write;

use crate::expr::{Expr, UnaryOp};
use crate::func::ScalarFunc;
use crate::operators::{AggCall, EmitMode, GroupOutput};
use crate::plan::{Input, OperatorSpec, PhysicalPlan, Placement, SinkConnector, SourceConnector, SourceNode};
use crate::types::{Schema, Value};
use crate::window::WindowSpec;

impl PhysicalPlan {
    /// A human-readable plan for `laminar explain`.
    pub fn explain(&self) -> String {
        let mut s = String::new();
        for (i, src) in self.sources.iter().enumerate() {
            self.explain_source(&mut s, i, src);
        }
        for (i, node) in self.nodes.iter().enumerate() {
            let inputs: Vec<String> = node.inputs.iter().map(|&x| self.input_name(x)).collect();
            let lines = self.describe(&node.spec, &node.inputs);
            let _ = writeln!(s, "#{i} {} <- {}: {}", node.name, inputs.join(", "), lines[0]);
            for line in &lines[1..] {
                let _ = writeln!(s, "    {line}");
            }
            let cols: Vec<&str> = node.schema.fields.iter().map(|f| f.name.as_str()).collect();
            let _ = writeln!(
                s,
                "    output: {}{}",
                cols.join(", "),
                if node.changelog {
                    " (a changelog: updates retract what was emitted)"
                } else {
                    ""
                }
            );
            let placements = node.input_placements();
            let _ = writeln!(
                s,
                "    shards: {}",
                spread(&placements[0], self.schema_of(node.inputs[0]))
            );
        }
        for sink in &self.sinks {
            let to = match &sink.connector {
                SinkConnector::File { path, format } => format!("file {} ({})", path.display(), format.name()),
                SinkConnector::Stdout => "stdout".to_string(),
                SinkConnector::Tcp { port } => format!("tcp subscribers on port {port}"),
                SinkConnector::Discard => "discarded (counted)".to_string(),
            };
            let _ = writeln!(
                s,
                "sink {} <- {}: {to}, written by shard 0",
                sink.name,
                self.input_name(sink.input)
            );
        }
        s
    }

    fn input_name(&self, input: Input) -> String {
        match input {
            Input::Source(i) => self.sources[i].name.clone(),
            Input::Node(n) => format!("#{n} ({})", self.nodes[n].name),
        }
    }

    fn explain_source(&self, s: &mut String, i: usize, src: &SourceNode) {
        let connector = match &src.connector {
            SourceConnector::File {
                path,
                format,
                header,
                delimiter,
                dead_letter,
                follow,
            } => {
                let mut c = format!("file {} ({}", path.display(), format.name());
                if *format == crate::format::Format::Csv {
                    let _ = write!(
                        c,
                        ", {}, delimiter {:?}",
                        match header {
                            Some(true) => "header",
                            Some(false) => "no header",
                            None => "header if line 1 names the columns",
                        },
                        char::from(*delimiter)
                    );
                }
                if let Some(f) = follow {
                    let _ = write!(c, ", followed, polled every {} ms", f.poll_ms);
                }
                if let Some(d) = dead_letter {
                    let _ = write!(c, ", dead letters to {}", d.display());
                }
                c.push(')');
                c
            }
            SourceConnector::Nexmark {
                kind,
                events,
                rate_per_sec,
                seed,
                ..
            } => format!(
                "nexmark {kind} ({events} events of all kinds, {rate_per_sec} per second of event time, seed {seed})"
            ),
            SourceConnector::Tcp {
                port,
                format,
                delimiter,
                dead_letter,
            } => {
                let mut c = format!("tcp port {port} ({}", format.name());
                if *format == crate::format::Format::Csv {
                    let _ = write!(c, ", delimiter {:?}", char::from(*delimiter));
                }
                if let Some(d) = dead_letter {
                    let _ = write!(c, ", dead letters to {}", d.display());
                }
                c.push(')');
                c
            }
        };
        // What a malformed record is: every declared column checked, or
        // only those read (`validate`); the generator's rows are valid.
        let validate = match (&src.connector, src.validate_all) {
            (SourceConnector::Nexmark { .. }, _) => "",
            (_, true) => ", every column validated",
            (_, false) => ", only the columns read validated",
        };
        let _ = writeln!(s, "source {}: {connector}{validate}", src.name);
        let cols: Vec<String> = src
            .declared
            .fields
            .iter()
            .map(|f| {
                let not_null = if f.nullable { "" } else { " NOT NULL" };
                format!("{} {}{not_null}", f.name, f.data_type)
            })
            .collect();
        let _ = writeln!(s, "    columns: {}", cols.join(", "));
        if let Some(w) = src.watermark {
            let _ = writeln!(
                s,
                "    watermark: {} - {}",
                src.schema.fields[w.column].name,
                duration(w.delay_ms)
            );
        }
        if src.used_columns.contains(&false) {
            let read: Vec<&str> = src
                .declared
                .fields
                .iter()
                .zip(&src.used_columns)
                .filter(|(_, &u)| u)
                .map(|(f, _)| f.name.as_str())
                .collect();
            let skipped = match src.connector {
                SourceConnector::Nexmark { .. } => "dropped as generated",
                SourceConnector::File {
                    format: crate::format::Format::Json,
                    ..
                }
                | SourceConnector::Tcp {
                    format: crate::format::Format::Json,
                    ..
                } => "checked, not kept",
                _ if src.validate_all => "checked, not kept",
                _ => "not parsed",
            };
            let _ = writeln!(
                s,
                "    reads: {} (the other columns are {skipped}{})",
                read.join(", "),
                if src.narrowed() { "; rows carry only these" } else { "" }
            );
        }
        let read_by = match &src.connector {
            SourceConnector::File { follow: Some(_), .. } | SourceConnector::Tcp { .. } => "one shard",
            _ if self.order_insensitive(i) => {
                "every shard, a part each, when large and checkpoints are off (no result depends on its order); \
                 else one shard"
            }
            _ => "one shard, in order (a result downstream depends on it)",
        };
        let _ = writeln!(s, "    read by: {read_by}");
    }

    /// One operator, in words and SQL over its input's columns: what it
    /// is, then a line per detail.
    fn describe(&self, spec: &OperatorSpec, inputs: &[Input]) -> Vec<String> {
        let input = self.schema_of(inputs[0]);
        let sql = |e: &Expr| render(e, &names(input));
        let list = |es: &[Expr]| es.iter().map(sql).collect::<Vec<_>>().join(", ");
        match spec {
            OperatorSpec::Map(m) => {
                let mut d = vec!["map".to_string()];
                if let Some(f) = &m.filter {
                    d.push(format!("WHERE {}", sql(f)));
                }
                if let Some(p) = &m.projection {
                    d.push(format!("SELECT {}", list(p)));
                }
                d
            }
            OperatorSpec::WindowTvf(w) => vec![format!(
                "window: {} on {}, adds window_start, window_end",
                window(&w.window),
                input.fields[w.time_column].name
            )],
            OperatorSpec::Aggregate(a) => {
                let mut d = vec![match &a.window {
                    Some(w) => format!(
                        "window aggregate over {} on {}",
                        window(w),
                        a.time_column.map_or("?", |t| input.fields[t].name.as_str())
                    ),
                    None => "aggregate, unwindowed".to_string(),
                }];
                d.extend(grouping(
                    Grouping {
                        filter: a.filter.as_ref(),
                        keys: &a.keys,
                        calls: &a.calls,
                        output: &a.output,
                        windowed: a.window.is_some(),
                        emit: a.emit,
                        lateness_ms: a.lateness_ms,
                        late_rows: a.late_rows,
                    },
                    input,
                ));
                if let Some(top) = a.top {
                    d.push(format!(
                        "emits at each window's close only the groups that can rank in its reader's top {}, by {} \
                         (a value that only grows: a group below {} others now stays below them)",
                        top.n,
                        call(&a.calls[top.call], &names(input)),
                        top.n
                    ));
                }
                d
            }
            OperatorSpec::Session(a) => {
                let mut d = vec![format!(
                    "session aggregate, gap {} on {}",
                    duration(a.gap_ms),
                    input.fields[a.time_column].name
                )];
                d.extend(grouping(
                    Grouping {
                        filter: a.filter.as_ref(),
                        keys: &a.keys,
                        calls: &a.calls,
                        output: &a.output,
                        windowed: true,
                        emit: a.emit,
                        lateness_ms: a.lateness_ms,
                        late_rows: a.late_rows,
                    },
                    input,
                ));
                d
            }
            OperatorSpec::Upsert(u) => {
                let keys: Vec<&str> = u.key_columns.iter().map(|&c| input.fields[c].name.as_str()).collect();
                vec![format!(
                    "table: the latest row per PRIMARY KEY ({}), as a changelog",
                    keys.join(", ")
                )]
            }
            OperatorSpec::IntervalJoin(j) => {
                let right = self.schema_of(inputs[1]);
                let (l, r) = (names(input), names(right));
                let keys = join_keys(&j.left_keys, &j.right_keys, &l, &r);
                let mut d = vec![
                    format!(
                        "{} join (l: {}, r: {})",
                        match j.kind {
                            crate::operators::join::JoinKind::Inner => "inner",
                            crate::operators::join::JoinKind::Left => "left outer",
                        },
                        self.input_name(inputs[0]),
                        self.input_name(inputs[1])
                    ),
                    format!("ON {}", keys.join(" AND ")),
                    format!(
                        "r.{} - l.{} in [{}, {}]",
                        right.fields[j.right_time].name,
                        input.fields[j.left_time].name,
                        signed_duration(j.lower_ms),
                        signed_duration(j.upper_ms)
                    ),
                ];
                if let Some(res) = &j.residual {
                    let both: Vec<String> = l
                        .iter()
                        .map(|n| format!("l.{n}"))
                        .chain(r.iter().map(|n| format!("r.{n}")))
                        .collect();
                    d.push(format!("AND {}", render(res, &both)));
                }
                if j.count_evictions {
                    d.push("a regular join: rows leave its state past the retention bound".to_string());
                }
                d
            }
            OperatorSpec::AsofJoin(j) => {
                let right = self.schema_of(inputs[1]);
                let (l, r) = (names(input), names(right));
                let keys = join_keys(&j.left_keys, &j.right_keys, &l, &r);
                let kind = match (j.right_changelog, j.keep_unmatched) {
                    (true, true) => "left lookup join on a table",
                    (true, false) => "inner lookup join on a table",
                    (false, _) => "ASOF join (left outer)",
                };
                let time = match j.right_time {
                    Some(t) => format!(
                        "the latest r with r.{} {} l.{}",
                        right.fields[t].name,
                        if j.strict { "<" } else { "<=" },
                        input.fields[j.left_time].name
                    ),
                    None => "right rows valid from the start".to_string(),
                };
                vec![
                    format!(
                        "{kind} (l: {}, r: {})",
                        self.input_name(inputs[0]),
                        self.input_name(inputs[1])
                    ),
                    format!("ON {}", keys.join(" AND ")),
                    time,
                ]
            }
            OperatorSpec::LateStream(l) => vec![format!("late rows of its input ({})", l.name)],
            OperatorSpec::TopN(t) => {
                let order: Vec<String> = t
                    .order
                    .iter()
                    .map(|(e, desc)| format!("{}{}", sql(e), if *desc { " DESC" } else { "" }))
                    .collect();
                vec![
                    format!("top {}", t.n),
                    format!(
                        "{}() OVER (PARTITION BY {} ORDER BY {}) <= {}, ties by the rows' values",
                        match t.kind {
                            crate::operators::topn::RankKind::RowNumber => "ROW_NUMBER",
                            crate::operators::topn::RankKind::Rank => "RANK",
                        },
                        if t.partition.is_empty() {
                            "()".to_string()
                        } else {
                            list(&t.partition)
                        },
                        order.join(", "),
                        t.n
                    ),
                    if t.window_end.is_some() {
                        "final rows when each window closes".to_string()
                    } else {
                        "a changelog".to_string()
                    },
                ]
            }
        }
    }
}

/// What a GROUP BY (windowed or session) is made of, for `grouping`.
struct Grouping<'a> {
    filter: Option<&'a Expr>,
    keys: &'a [Expr],
    calls: &'a [AggCall],
    output: &'a GroupOutput,
    windowed: bool,
    emit: EmitMode,
    lateness_ms: i64,
    late_rows: bool,
}

/// A grouping's lines: WHERE, GROUP BY, the aggregates, what a group
/// emits (SELECT and HAVING over `keys ++ [window bounds] ++
/// aggregates`), the emit mode and where late rows go.
fn grouping(g: Grouping<'_>, input: &Schema) -> Vec<String> {
    let input_names = names(input);
    let mut d = Vec::new();
    if let Some(f) = g.filter {
        d.push(format!("WHERE {}", render(f, &input_names)));
    }
    let keys: Vec<String> = g.keys.iter().map(|e| render(e, &input_names)).collect();
    d.push(format!(
        "GROUP BY {}",
        if keys.is_empty() {
            "()".to_string()
        } else {
            keys.join(", ")
        }
    ));
    d.push(calls(g.calls, input));
    let mut inter = keys;
    if g.windowed {
        inter.push("window_start".into());
        inter.push("window_end".into());
    }
    inter.extend(g.calls.iter().map(|c| call(c, &input_names)));
    let select: Vec<String> = g.output.select.iter().map(|e| render(e, &inter)).collect();
    d.push(format!("SELECT {}", select.join(", ")));
    if let Some(h) = &g.output.having {
        d.push(format!("HAVING {}", render(h, &inter)));
    }
    d.push(emit(g.emit, g.lateness_ms));
    if g.late_rows {
        d.push("late and no-time rows: to its LATE DATA stream".to_string());
    }
    d
}

/// A join's equality keys as `l.a = r.b AND …`.
fn join_keys(left: &[Expr], right: &[Expr], l: &[String], r: &[String]) -> Vec<String> {
    left.iter()
        .zip(right)
        .map(|(a, b)| format!("l.{} = r.{}", render(a, l), render(b, r)))
        .collect()
}

/// Where an operator runs, from where its first input's rows must be.
fn spread(p: &Placement, input: &Schema) -> String {
    match p {
        Placement::Local => "wherever its input is (no exchange)".to_string(),
        Placement::Single => "shard 0 (every row gathered there)".to_string(),
        Placement::Keyed(keys) => {
            let n = names(input);
            let k: Vec<String> = keys.iter().map(|e| render(e, &n)).collect();
            format!("every shard, rows exchanged by hash of ({})", k.join(", "))
        }
    }
}

fn names(schema: &Schema) -> Vec<String> {
    schema.fields.iter().map(|f| f.name.clone()).collect()
}

fn calls(calls_: &[AggCall], input: &Schema) -> String {
    let n = names(input);
    let all: Vec<String> = calls_.iter().map(|c| call(c, &n)).collect();
    format!(
        "aggregates: {}",
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    )
}

fn call(c: &AggCall, names: &[String]) -> String {
    use crate::agg::AggKind;
    let mut t = match (c.kind, &c.arg) {
        (AggKind::CountStar, _) => "COUNT(*)".to_string(),
        (AggKind::CountDistinct, Some(a)) => format!("COUNT(DISTINCT {})", render(a, names)),
        (k, Some(a)) => format!("{}({})", k.sql_name(), render(a, names)),
        (k, None) => format!("{}()", k.sql_name()),
    };
    if let Some(f) = &c.filter {
        let _ = write!(t, " FILTER (WHERE {})", render(f, names));
    }
    t
}

fn window(w: &WindowSpec) -> String {
    match w {
        WindowSpec::Tumble { size_ms } => format!("TUMBLE {}", duration(*size_ms)),
        WindowSpec::Hop { slide_ms, size_ms } => {
            format!("HOP size {} every {}", duration(*size_ms), duration(*slide_ms))
        }
        WindowSpec::Session { gap_ms } => format!("SESSION gap {}", duration(*gap_ms)),
    }
}

fn emit(e: EmitMode, lateness_ms: i64) -> String {
    let mode = match e {
        EmitMode::OnWindowClose => "EMIT ON WINDOW CLOSE (final rows)".to_string(),
        EmitMode::Changes => "EMIT CHANGES (a changelog)".to_string(),
        EmitMode::Final => "EMIT FINAL (final rows, no lateness)".to_string(),
        EmitMode::Every { interval_ms } => format!("EMIT EVERY {} (a changelog)", duration(interval_ms)),
    };
    if lateness_ms > 0 {
        format!("{mode}, ALLOW LATENESS {}", duration(lateness_ms))
    } else {
        mode
    }
}

/// A duration in the largest unit that divides it: `4 s`, `250 ms`.
fn duration(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s")];
    for (size, unit) in UNITS {
        if ms != 0 && ms % size == 0 {
            return format!("{} {unit}", ms / size);
        }
    }
    format!("{ms} ms")
}

fn signed_duration(ms: i64) -> String {
    if ms < 0 {
        format!("-{}", duration(ms.saturating_neg()))
    } else {
        duration(ms)
    }
}

/// An expression as SQL over the column `names` of its input.
pub fn render(e: &Expr, names: &[String]) -> String {
    let r = |e: &Expr| render(e, names);
    match e {
        Expr::Column(c) => names.get(*c).cloned().unwrap_or_else(|| format!("#{c}")),
        Expr::Literal(v) => literal(v),
        Expr::Unary { op, arg } => match op {
            UnaryOp::Neg => format!("-{}", r(arg)),
            UnaryOp::Not => format!("NOT {}", r(arg)),
        },
        Expr::Binary { op, left, right } => {
            let op = op.symbol();
            format!("({} {op} {})", r(left), r(right))
        }
        Expr::And(terms) => format!("({})", terms.iter().map(r).collect::<Vec<_>>().join(" AND ")),
        Expr::Or(terms) => format!("({})", terms.iter().map(r).collect::<Vec<_>>().join(" OR ")),
        Expr::IsNull { arg, negated } => format!("{} IS {}NULL", r(arg), if *negated { "NOT " } else { "" }),
        Expr::InList { arg, list, negated } => format!(
            "{} {}IN ({})",
            r(arg),
            if *negated { "NOT " } else { "" },
            list.iter().map(r).collect::<Vec<_>>().join(", ")
        ),
        Expr::Case {
            operand,
            whens,
            otherwise,
        } => {
            let mut t = "CASE".to_string();
            if let Some(o) = operand {
                let _ = write!(t, " {}", r(o));
            }
            for (w, then) in whens {
                let _ = write!(t, " WHEN {} THEN {}", r(w), r(then));
            }
            if let Some(o) = otherwise {
                let _ = write!(t, " ELSE {}", r(o));
            }
            t.push_str(" END");
            t
        }
        Expr::Cast { arg, to } => format!("CAST({} AS {to})", r(arg)),
        Expr::Like {
            arg,
            pattern,
            negated,
            case_insensitive,
        } => format!(
            "{} {}{} {}",
            r(arg),
            if *negated { "NOT " } else { "" },
            if *case_insensitive { "ILIKE" } else { "LIKE" },
            r(pattern)
        ),
        Expr::Func { func, args } => {
            let args: Vec<String> = args.iter().map(r).collect();
            match func {
                // The field is its first argument, a literal.
                ScalarFunc::Extract(field) => format!(
                    "EXTRACT({} FROM {})",
                    format!("{field:?}").to_uppercase(),
                    args.last().map_or("", String::as_str)
                ),
                _ => format!("{}({})", func_name(func), args.join(", ")),
            }
        }
    }
}

fn func_name(f: &ScalarFunc) -> String {
    let name = match f {
        ScalarFunc::Math(m) => return format!("{m:?}").to_uppercase(),
        ScalarFunc::Trim(side) => return format!("TRIM_{side:?}").to_uppercase(),
        ScalarFunc::RegexpMatch(_) => "REGEXP_MATCHES",
        ScalarFunc::RegexpExtract(_) => "REGEXP_EXTRACT",
        ScalarFunc::DateTrunc(_) => "DATE_TRUNC",
        ScalarFunc::DateFormat(_) => "DATE_FORMAT",
        ScalarFunc::TimestampAddMs => "TIMESTAMP_ADD_MS",
        ScalarFunc::TimestampDiffMs => "TIMESTAMP_DIFF_MS",
        ScalarFunc::NullIf => "NULLIF",
        ScalarFunc::SplitPart => "SPLIT_PART",
        ScalarFunc::StartsWith => "STARTS_WITH",
        ScalarFunc::EndsWith => "ENDS_WITH",
        ScalarFunc::StrPos => "STRPOS",
        other => return format!("{other:?}").to_uppercase(),
    };
    name.to_string()
}

fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_string(),
        Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => format!("{d:?}"),
        Value::Str(s) => format!("'{}'", s.as_str().replace('\'', "''")),
        Value::Ts(ms) => format!("TIMESTAMP '{}'", crate::time::timestamp_to_string(*ms)),
    }
}
