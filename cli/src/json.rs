//! Just enough JSON output for `--json`: objects of strings and numbers, written by hand so the
//! build needs no serializer.

use std::fmt::Write;

/// A JSON value the benchmark reports are made of.
pub enum Value {
    Str(String),
    Num(f64),
    Int(u64),
    Obj(Vec<(&'static str, Value)>),
    Arr(Vec<Value>),
}

impl Value {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Value::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Value::Num(n) if n.is_finite() => {
                let _ = write!(out, "{n}");
            }
            Value::Num(_) => out.push_str("null"),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Obj(fields) => {
                out.push('{');
                for (i, (key, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Value::Str((*key).to_string()).write(out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
            Value::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn renders_nested_values_and_escapes() {
        let v = Value::Obj(vec![
            ("name", Value::Str("a\"b\\c\n".into())),
            ("n", Value::Int(3)),
            ("x", Value::Num(1.5)),
            ("nan", Value::Num(f64::NAN)),
            ("list", Value::Arr(vec![Value::Int(1), Value::Int(2)])),
        ]);
        assert_eq!(
            v.render(),
            r#"{"name":"a\"b\\c\u000a","n":3,"x":1.5,"nan":null,"list":[1,2]}"#
        );
    }
}
