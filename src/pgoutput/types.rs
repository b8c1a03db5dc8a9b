//! Type names as `format_type_with_typemod` prints them (what wal2json prints with `include-types`), for the
//! built-in types (OID below 10000, which pgoutput never describes with a Type message) and for the types a Type
//! message names; and how each type's text becomes a [`Value`](crate::event::Value).

use std::borrow::Cow;

/// `(oid, element type for a varlena array else 0, typname, format_type(oid, -1))` of every built-in type that
/// can be a column's type (PostgreSQL 15 and 18 have the same set), sorted by OID. Generated from
/// `SELECT oid, …, typname, format_type(oid, -1) FROM pg_type WHERE oid < 10000 AND typtype <> 'p'`;
/// `tests/pgoutput_events.rs` checks it against a live server.
const BUILTIN: &[(u32, u32, &str, &str)] = &[
    (16, 0, "bool", "boolean"),
    (17, 0, "bytea", "bytea"),
    (18, 0, "char", "\"char\""),
    (19, 0, "name", "name"),
    (20, 0, "int8", "bigint"),
    (21, 0, "int2", "smallint"),
    (22, 0, "int2vector", "int2vector"),
    (23, 0, "int4", "integer"),
    (24, 0, "regproc", "regproc"),
    (25, 0, "text", "text"),
    (26, 0, "oid", "oid"),
    (27, 0, "tid", "tid"),
    (28, 0, "xid", "xid"),
    (29, 0, "cid", "cid"),
    (30, 0, "oidvector", "oidvector"),
    (71, 0, "pg_type", "pg_type"),
    (75, 0, "pg_attribute", "pg_attribute"),
    (81, 0, "pg_proc", "pg_proc"),
    (83, 0, "pg_class", "pg_class"),
    (114, 0, "json", "json"),
    (142, 0, "xml", "xml"),
    (143, 142, "_xml", "xml[]"),
    (194, 0, "pg_node_tree", "pg_node_tree"),
    (199, 114, "_json", "json[]"),
    (210, 71, "_pg_type", "pg_type[]"),
    (270, 75, "_pg_attribute", "pg_attribute[]"),
    (271, 5069, "_xid8", "xid8[]"),
    (272, 81, "_pg_proc", "pg_proc[]"),
    (273, 83, "_pg_class", "pg_class[]"),
    (600, 0, "point", "point"),
    (601, 0, "lseg", "lseg"),
    (602, 0, "path", "path"),
    (603, 0, "box", "box"),
    (604, 0, "polygon", "polygon"),
    (628, 0, "line", "line"),
    (629, 628, "_line", "line[]"),
    (650, 0, "cidr", "cidr"),
    (651, 650, "_cidr", "cidr[]"),
    (700, 0, "float4", "real"),
    (701, 0, "float8", "double precision"),
    (718, 0, "circle", "circle"),
    (719, 718, "_circle", "circle[]"),
    (774, 0, "macaddr8", "macaddr8"),
    (775, 774, "_macaddr8", "macaddr8[]"),
    (790, 0, "money", "money"),
    (791, 790, "_money", "money[]"),
    (829, 0, "macaddr", "macaddr"),
    (869, 0, "inet", "inet"),
    (1000, 16, "_bool", "boolean[]"),
    (1001, 17, "_bytea", "bytea[]"),
    (1002, 18, "_char", "\"char\"[]"),
    (1003, 19, "_name", "name[]"),
    (1005, 21, "_int2", "smallint[]"),
    (1006, 22, "_int2vector", "int2vector[]"),
    (1007, 23, "_int4", "integer[]"),
    (1008, 24, "_regproc", "regproc[]"),
    (1009, 25, "_text", "text[]"),
    (1010, 27, "_tid", "tid[]"),
    (1011, 28, "_xid", "xid[]"),
    (1012, 29, "_cid", "cid[]"),
    (1013, 30, "_oidvector", "oidvector[]"),
    (1014, 1042, "_bpchar", "bpchar[]"),
    (1015, 1043, "_varchar", "character varying[]"),
    (1016, 20, "_int8", "bigint[]"),
    (1017, 600, "_point", "point[]"),
    (1018, 601, "_lseg", "lseg[]"),
    (1019, 602, "_path", "path[]"),
    (1020, 603, "_box", "box[]"),
    (1021, 700, "_float4", "real[]"),
    (1022, 701, "_float8", "double precision[]"),
    (1027, 604, "_polygon", "polygon[]"),
    (1028, 26, "_oid", "oid[]"),
    (1033, 0, "aclitem", "aclitem"),
    (1034, 1033, "_aclitem", "aclitem[]"),
    (1040, 829, "_macaddr", "macaddr[]"),
    (1041, 869, "_inet", "inet[]"),
    (1042, 0, "bpchar", "bpchar"),
    (1043, 0, "varchar", "character varying"),
    (1082, 0, "date", "date"),
    (1083, 0, "time", "time without time zone"),
    (1114, 0, "timestamp", "timestamp without time zone"),
    (1115, 1114, "_timestamp", "timestamp without time zone[]"),
    (1182, 1082, "_date", "date[]"),
    (1183, 1083, "_time", "time without time zone[]"),
    (1184, 0, "timestamptz", "timestamp with time zone"),
    (1185, 1184, "_timestamptz", "timestamp with time zone[]"),
    (1186, 0, "interval", "interval"),
    (1187, 1186, "_interval", "interval[]"),
    (1231, 1700, "_numeric", "numeric[]"),
    (1248, 0, "pg_database", "pg_database"),
    (1263, 2275, "_cstring", "cstring[]"),
    (1266, 0, "timetz", "time with time zone"),
    (1270, 1266, "_timetz", "time with time zone[]"),
    (1560, 0, "bit", "\"bit\""),
    (1561, 1560, "_bit", "\"bit\"[]"),
    (1562, 0, "varbit", "bit varying"),
    (1563, 1562, "_varbit", "bit varying[]"),
    (1700, 0, "numeric", "numeric"),
    (1790, 0, "refcursor", "refcursor"),
    (2201, 1790, "_refcursor", "refcursor[]"),
    (2202, 0, "regprocedure", "regprocedure"),
    (2203, 0, "regoper", "regoper"),
    (2204, 0, "regoperator", "regoperator"),
    (2205, 0, "regclass", "regclass"),
    (2206, 0, "regtype", "regtype"),
    (2207, 2202, "_regprocedure", "regprocedure[]"),
    (2208, 2203, "_regoper", "regoper[]"),
    (2209, 2204, "_regoperator", "regoperator[]"),
    (2210, 2205, "_regclass", "regclass[]"),
    (2211, 2206, "_regtype", "regtype[]"),
    (2842, 0, "pg_authid", "pg_authid"),
    (2843, 0, "pg_auth_members", "pg_auth_members"),
    (2949, 2970, "_txid_snapshot", "txid_snapshot[]"),
    (2950, 0, "uuid", "uuid"),
    (2951, 2950, "_uuid", "uuid[]"),
    (2970, 0, "txid_snapshot", "txid_snapshot"),
    (3220, 0, "pg_lsn", "pg_lsn"),
    (3221, 3220, "_pg_lsn", "pg_lsn[]"),
    (3361, 0, "pg_ndistinct", "pg_ndistinct"),
    (3402, 0, "pg_dependencies", "pg_dependencies"),
    (3614, 0, "tsvector", "tsvector"),
    (3615, 0, "tsquery", "tsquery"),
    (3642, 0, "gtsvector", "gtsvector"),
    (3643, 3614, "_tsvector", "tsvector[]"),
    (3644, 3642, "_gtsvector", "gtsvector[]"),
    (3645, 3615, "_tsquery", "tsquery[]"),
    (3734, 0, "regconfig", "regconfig"),
    (3735, 3734, "_regconfig", "regconfig[]"),
    (3769, 0, "regdictionary", "regdictionary"),
    (3770, 3769, "_regdictionary", "regdictionary[]"),
    (3802, 0, "jsonb", "jsonb"),
    (3807, 3802, "_jsonb", "jsonb[]"),
    (3904, 0, "int4range", "int4range"),
    (3905, 3904, "_int4range", "int4range[]"),
    (3906, 0, "numrange", "numrange"),
    (3907, 3906, "_numrange", "numrange[]"),
    (3908, 0, "tsrange", "tsrange"),
    (3909, 3908, "_tsrange", "tsrange[]"),
    (3910, 0, "tstzrange", "tstzrange"),
    (3911, 3910, "_tstzrange", "tstzrange[]"),
    (3912, 0, "daterange", "daterange"),
    (3913, 3912, "_daterange", "daterange[]"),
    (3926, 0, "int8range", "int8range"),
    (3927, 3926, "_int8range", "int8range[]"),
    (4066, 0, "pg_shseclabel", "pg_shseclabel"),
    (4072, 0, "jsonpath", "jsonpath"),
    (4073, 4072, "_jsonpath", "jsonpath[]"),
    (4089, 0, "regnamespace", "regnamespace"),
    (4090, 4089, "_regnamespace", "regnamespace[]"),
    (4096, 0, "regrole", "regrole"),
    (4097, 4096, "_regrole", "regrole[]"),
    (4191, 0, "regcollation", "regcollation"),
    (4192, 4191, "_regcollation", "regcollation[]"),
    (4451, 0, "int4multirange", "int4multirange"),
    (4532, 0, "nummultirange", "nummultirange"),
    (4533, 0, "tsmultirange", "tsmultirange"),
    (4534, 0, "tstzmultirange", "tstzmultirange"),
    (4535, 0, "datemultirange", "datemultirange"),
    (4536, 0, "int8multirange", "int8multirange"),
    (4600, 0, "pg_brin_bloom_summary", "pg_brin_bloom_summary"),
    (4601, 0, "pg_brin_minmax_multi_summary", "pg_brin_minmax_multi_summary"),
    (5017, 0, "pg_mcv_list", "pg_mcv_list"),
    (5038, 0, "pg_snapshot", "pg_snapshot"),
    (5039, 5038, "_pg_snapshot", "pg_snapshot[]"),
    (5069, 0, "xid8", "xid8"),
    (6101, 0, "pg_subscription", "pg_subscription"),
    (6150, 4451, "_int4multirange", "int4multirange[]"),
    (6151, 4532, "_nummultirange", "nummultirange[]"),
    (6152, 4533, "_tsmultirange", "tsmultirange[]"),
    (6153, 4534, "_tstzmultirange", "tstzmultirange[]"),
    (6155, 4535, "_datemultirange", "datemultirange[]"),
    (6157, 4536, "_int8multirange", "int8multirange[]"),
];

/// Keywords `quote_identifier` quotes (every category but unreserved), as PostgreSQL 18 lists them
/// (`pg_get_keywords()`; 15's list lacks the `json…` ones, `merge_action` and `system_user`).
const KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "json",
    "json_array",
    "json_arrayagg",
    "json_exists",
    "json_object",
    "json_objectagg",
    "json_query",
    "json_scalar",
    "json_serialize",
    "json_table",
    "json_value",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "merge_action",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "system_user",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

pub(crate) const BOOL: u32 = 16;
pub(crate) const BYTEA: u32 = 17;
pub(crate) const NAME: u32 = 19;
pub(crate) const INT8: u32 = 20;
pub(crate) const INT2: u32 = 21;
pub(crate) const INT4: u32 = 23;
pub(crate) const TEXT: u32 = 25;
pub(crate) const OID: u32 = 26;
pub(crate) const JSON: u32 = 114;
pub(crate) const FLOAT4: u32 = 700;
pub(crate) const FLOAT8: u32 = 701;
pub(crate) const BPCHAR: u32 = 1042;
pub(crate) const VARCHAR: u32 = 1043;
pub(crate) const TIME: u32 = 1083;
pub(crate) const TIMESTAMP: u32 = 1114;
pub(crate) const TIMESTAMPTZ: u32 = 1184;
pub(crate) const INTERVAL: u32 = 1186;
pub(crate) const TIMETZ: u32 = 1266;
pub(crate) const BIT: u32 = 1560;
pub(crate) const VARBIT: u32 = 1562;
pub(crate) const NUMERIC: u32 = 1700;
pub(crate) const UUID: u32 = 2950;
pub(crate) const JSONB: u32 = 3802;

/// `varlena` header size, which character and numeric typmods include.
const VARHDRSZ: i32 = 4;

fn builtin(oid: u32) -> Option<&'static (u32, u32, &'static str, &'static str)> {
    BUILTIN.binary_search_by_key(&oid, |e| e.0).ok().and_then(|i| BUILTIN.get(i))
}

/// Whether `oid` is one of the built-in types pgrepl knows (those the server never sends a Type message for).
pub fn is_builtin(oid: u32) -> bool {
    builtin(oid).is_some()
}

/// `format_type_with_typemod(oid, typmod)` of a built-in type, as wal2json prints it: `integer`,
/// `character varying(20)`, `numeric(10,2)`, `timestamp(3) with time zone`, `interval day to second(3)`,
/// `bit(5)`, `integer[]`, `"char"`, `bpchar` (typmod -1). `None` for an OID that is not built in.
///
/// ```
/// use pgrepl::pgoutput::builtin_type_name;
/// assert_eq!(builtin_type_name(1043, 24).as_deref(), Some("character varying(20)"));
/// assert_eq!(builtin_type_name(1700, (10 << 16 | 2) + 4).as_deref(), Some("numeric(10,2)"));
/// assert_eq!(builtin_type_name(1007, -1).as_deref(), Some("integer[]"));
/// assert_eq!(builtin_type_name(16384, -1), None);
/// ```
pub fn builtin_type_name(oid: u32, typmod: i32) -> Option<Cow<'static, str>> {
    let &(_, elem, _, name) = builtin(oid)?;
    if typmod < 0 {
        return Some(Cow::Borrowed(name));
    }
    if elem != 0 {
        // the typmod is the element's: `character varying(20)[]`
        let &(_, _, _, elem_name) = builtin(elem)?;
        let mut s = with_typmod(elem, elem_name, typmod);
        s.push_str("[]");
        return Some(Cow::Owned(s));
    }
    Some(Cow::Owned(with_typmod(oid, name, typmod)))
}

/// The special cases of `format_type_extended` with a typmod (≥ 0) and the types' `typmodout` functions.
fn with_typmod(oid: u32, name: &str, typmod: i32) -> String {
    match oid {
        BIT => format!("bit({typmod})"),
        VARBIT => format!("bit varying({typmod})"),
        BPCHAR => format!("character{}", char_typmod(typmod)),
        VARCHAR => format!("character varying{}", char_typmod(typmod)),
        NUMERIC => {
            let t = typmod.wrapping_sub(VARHDRSZ);
            let precision = (t >> 16) & 0xffff;
            // 11-bit signed scale (PostgreSQL 15 allows negative scales)
            let scale = ((t & 0x7ff) ^ 1024) - 1024;
            format!("numeric({precision},{scale})")
        }
        TIME => format!("time({typmod}) without time zone"),
        TIMETZ => format!("time({typmod}) with time zone"),
        TIMESTAMP => format!("timestamp({typmod}) without time zone"),
        TIMESTAMPTZ => format!("timestamp({typmod}) with time zone"),
        INTERVAL => format!("interval{}", interval_typmod(typmod)),
        // printTypmod without a typmodout function
        _ => format!("{name}({typmod})"),
    }
}

/// `anychar_typmodout`.
fn char_typmod(typmod: i32) -> String {
    if typmod > VARHDRSZ {
        format!("({})", typmod - VARHDRSZ)
    } else {
        String::new()
    }
}

/// `intervaltypmodout`: the fields (`INTERVAL_RANGE`) and the seconds' precision (`INTERVAL_PRECISION`).
fn interval_typmod(typmod: i32) -> String {
    const MONTH: i32 = 1 << 1;
    const YEAR: i32 = 1 << 2;
    const DAY: i32 = 1 << 3;
    const HOUR: i32 = 1 << 10;
    const MINUTE: i32 = 1 << 11;
    const SECOND: i32 = 1 << 12;
    const FULL_RANGE: i32 = 0x7fff;
    const FULL_PRECISION: i32 = 0xffff;
    let fields = match (typmod >> 16) & 0x7fff {
        YEAR => " year",
        MONTH => " month",
        DAY => " day",
        HOUR => " hour",
        MINUTE => " minute",
        SECOND => " second",
        f if f == YEAR | MONTH => " year to month",
        f if f == DAY | HOUR => " day to hour",
        f if f == DAY | HOUR | MINUTE => " day to minute",
        f if f == DAY | HOUR | MINUTE | SECOND => " day to second",
        f if f == HOUR | MINUTE => " hour to minute",
        f if f == HOUR | MINUTE | SECOND => " hour to second",
        f if f == MINUTE | SECOND => " minute to second",
        FULL_RANGE => "",
        // the server refuses such a typmod
        _ => "",
    };
    let precision = typmod & 0xffff;
    if precision == FULL_PRECISION {
        fields.to_string()
    } else {
        format!("{fields}({precision})")
    }
}

/// `quote_identifier`: bare when it is lower-case letters, digits and `_` (not starting with a digit) and not a
/// keyword outside the unreserved ones; otherwise in double quotes with `"` doubled.
pub fn quote_identifier(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let safe = b.first().is_some_and(|&c| c.is_ascii_lowercase() || c == b'_')
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && KEYWORDS.binary_search(&s).is_err();
    if safe {
        Cow::Borrowed(s)
    } else {
        let mut q = String::with_capacity(s.len() + 2);
        q.push('"');
        for ch in s.chars() {
            if ch == '"' {
                q.push('"');
            }
            q.push(ch);
        }
        q.push('"');
        Cow::Owned(q)
    }
}

/// The name of a type a Type message described (`namespace`, `name`), for a column with `typmod`, as
/// `format_type_with_typemod` would print it under the default `search_path` (`"$user", public`): unqualified
/// in `public` and `pg_catalog`, schema-qualified elsewhere, each part quoted as `quote_identifier` quotes.
///
/// What pgoutput does not send cannot be printed, so the name can differ from wal2json's in three cases
/// (documented in [`crate::pgoutput`]): a domain (the server names its *base* type: `integer` for a domain over
/// `int4`); an array of a user type, recognised by its `pg_type` name (`_mood` is printed `mood[]`, so a type
/// whose own name starts with `_` is printed as an array); a typmod of a user type with its own `typmodout`
/// (printed as `(n)`).
pub fn user_type_name(namespace: &str, name: &str, typmod: i32) -> String {
    if namespace == "pg_catalog" {
        if let Some(&(oid, ..)) = BUILTIN.iter().find(|e| e.2 == name) {
            if let Some(n) = builtin_type_name(oid, typmod) {
                return n.into_owned();
            }
        }
    }
    let (elem, array) = match name.strip_prefix('_') {
        Some(e) if !e.is_empty() => (e, true),
        _ => (name, false),
    };
    let mut s = String::new();
    if namespace != "public" && namespace != "pg_catalog" {
        s.push_str(&quote_identifier(namespace));
        s.push('.');
    }
    s.push_str(&quote_identifier(elem));
    if typmod >= 0 {
        s.push_str(&format!("({typmod})"));
    }
    if array {
        s.push_str("[]");
    }
    s
}

/// How a type's text becomes a [`Value`](crate::event::Value) (by the column's type OID, as wal2json decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ValueKind {
    /// int2, int4, int8, oid, float4, float8, numeric: [`Value::Number`](crate::event::Value::Number).
    Number,
    /// boolean: [`Value::Bool`](crate::event::Value::Bool).
    Bool,
    /// bytea: the hex digits without `\x`.
    Bytea,
    /// Everything else (domains and arrays of numbers included, as wal2json decides by the column's own type).
    Text,
}

pub(crate) fn value_kind(oid: u32) -> ValueKind {
    match oid {
        INT2 | INT4 | INT8 | OID | FLOAT4 | FLOAT8 | NUMERIC => ValueKind::Number,
        BOOL => ValueKind::Bool,
        BYTEA => ValueKind::Bytea,
        _ => ValueKind::Text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted() {
        assert!(BUILTIN.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn names_with_typmods() {
        let n = |oid, typmod| builtin_type_name(oid, typmod).unwrap().into_owned();
        assert_eq!(n(INT4, -1), "integer");
        assert_eq!(n(VARCHAR, 24), "character varying(20)");
        assert_eq!(n(VARCHAR, -1), "character varying");
        assert_eq!(n(BPCHAR, 7), "character(3)");
        assert_eq!(n(BPCHAR, -1), "bpchar");
        assert_eq!(n(NUMERIC, ((10 << 16) | 2) + 4), "numeric(10,2)");
        assert_eq!(n(NUMERIC, ((5 << 16) | (-2i32 & 0x7ff)) + 4), "numeric(5,-2)");
        assert_eq!(n(NUMERIC, -1), "numeric");
        assert_eq!(n(TIMESTAMPTZ, 3), "timestamp(3) with time zone");
        assert_eq!(n(TIMESTAMPTZ, -1), "timestamp with time zone");
        assert_eq!(n(TIMESTAMP, 0), "timestamp(0) without time zone");
        assert_eq!(n(TIME, 2), "time(2) without time zone");
        assert_eq!(n(TIMETZ, 6), "time(6) with time zone");
        assert_eq!(n(BIT, 5), "bit(5)");
        assert_eq!(n(BIT, -1), "\"bit\"");
        assert_eq!(n(VARBIT, 8), "bit varying(8)");
        assert_eq!(n(INTERVAL, -1), "interval");
        // YEAR | MONTH, full precision
        assert_eq!(n(INTERVAL, (6 << 16) | 0xffff), "interval year to month");
        // DAY..SECOND, precision 3
        assert_eq!(n(INTERVAL, ((8 | 1024 | 2048 | 4096) << 16) | 3), "interval day to second(3)");
        assert_eq!(n(INTERVAL, (0x7fff << 16) | 2), "interval(2)");
        assert_eq!(n(1007, -1), "integer[]");
        assert_eq!(n(1015, 24), "character varying(20)[]");
        assert_eq!(n(18, -1), "\"char\"");
        assert_eq!(n(3802, -1), "jsonb");
        assert_eq!(builtin_type_name(99_999, -1), None);
    }

    #[test]
    fn quoting_and_user_types() {
        assert_eq!(quote_identifier("mood"), "mood");
        assert_eq!(quote_identifier("Mood"), "\"Mood\"");
        assert_eq!(quote_identifier("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_identifier("user"), "\"user\"");
        assert_eq!(quote_identifier("text"), "text");
        assert_eq!(quote_identifier("1a"), "\"1a\"");
        assert_eq!(quote_identifier(""), "\"\"");
        assert_eq!(user_type_name("public", "mood", -1), "mood");
        assert_eq!(user_type_name("public", "_mood", -1), "mood[]");
        assert_eq!(user_type_name("My Schema", "mood", -1), "\"My Schema\".mood");
        assert_eq!(user_type_name("s", "Odd", 7), "s.\"Odd\"(7)");
        assert_eq!(user_type_name("pg_catalog", "int4", -1), "integer");
        assert_eq!(user_type_name("pg_catalog", "varchar", 24), "character varying(20)");
        assert_eq!(user_type_name("public", "_", -1), "_");
    }

    #[test]
    fn value_kinds() {
        assert_eq!(value_kind(INT8), ValueKind::Number);
        assert_eq!(value_kind(NUMERIC), ValueKind::Number);
        assert_eq!(value_kind(BOOL), ValueKind::Bool);
        assert_eq!(value_kind(BYTEA), ValueKind::Bytea);
        assert_eq!(value_kind(1007), ValueKind::Text);
        assert_eq!(value_kind(TEXT), ValueKind::Text);
    }
}
