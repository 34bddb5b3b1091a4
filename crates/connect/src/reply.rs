//! Reading a YAML reply the way tarantoolctl does: the reply is an error if its first item is a
//! map with an `error` key; the message is that value (a string as is, anything else as JSON).

use yaml_rust2::{Yaml, YamlLoader};

/// The error message of a reply that reports an error, or None.
pub fn error_message(reply: &str) -> Option<String> {
    let docs = YamlLoader::load_from_str(reply).ok()?;
    let Yaml::Array(items) = docs.first()? else {
        return None;
    };
    let Yaml::Hash(map) = items.first()? else {
        return None;
    };
    let error = map.get(&Yaml::String("error".to_string()))?;
    Some(match error {
        Yaml::String(s) => s.clone(),
        other => {
            let mut out = String::new();
            json(&mut out, other);
            out
        }
    })
}

fn json(out: &mut String, value: &Yaml) {
    match value {
        Yaml::String(s) => json_string(out, s),
        Yaml::Integer(i) => out.push_str(&i.to_string()),
        Yaml::Real(r) => out.push_str(r),
        Yaml::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Yaml::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(out, item);
            }
            out.push(']');
        }
        Yaml::Hash(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k {
                    Yaml::String(s) => json_string(out, s),
                    other => {
                        let mut key = String::new();
                        json(&mut key, other);
                        json_string(out, &key);
                    }
                }
                out.push(':');
                json(out, v);
            }
            out.push('}');
        }
        _ => out.push_str("null"),
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '/' => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_found() {
        assert_eq!(
            error_message("---\n- error: boom\n...\n").as_deref(),
            Some("boom")
        );
        assert_eq!(
            error_message("---\n- error:\n    code: 5\n...\n").as_deref(),
            Some("{\"code\":5}")
        );
        assert_eq!(error_message("---\n- 1\n...\n"), None);
        assert_eq!(error_message("---\n...\n"), None);
        assert_eq!(error_message("1, 2;"), None);
    }
}
