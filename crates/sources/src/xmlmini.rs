//! A tiny, bounded XML reader for Maven's `settings.xml` and super-POM: elements, text and entity references only
//! (attributes are skipped, comments, processing instructions, doctypes and CDATA are handled). Never panics on
//! hostile input; depth and node counts are capped.

/// One element: its local name (any `prefix:` dropped), its text (concatenated, trimmed) and child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XmlElement {
    pub name: String,
    pub text: String,
    pub children: Vec<XmlElement>,
}

impl XmlElement {
    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&XmlElement> {
        self.children.iter().find(|c| c.name == name)
    }
    /// Every child called `name`.
    pub fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a XmlElement> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The trimmed text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
    /// Follows a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<&XmlElement> {
        names.iter().try_fold(self, |el, name| el.child(name))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed XML: {0}")]
pub struct XmlError(pub &'static str);

const MAX_DEPTH: usize = 64;
const MAX_NODES: usize = 100_000;

/// Parses a document and returns its root element.
pub fn parse_xml(input: &str) -> Result<XmlElement, XmlError> {
    let mut stack: Vec<XmlElement> = vec![XmlElement::default()];
    let mut rest = input;
    let mut nodes = 0usize;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut stack, rest)?;
            break;
        };
        push_text(&mut stack, &rest[..lt])?;
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or(XmlError("unterminated comment"))?;
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").ok_or(XmlError("unterminated CDATA"))?;
            if let Some(top) = stack.last_mut() {
                top.text.push_str(&after[..end]);
            }
            rest = &after[end + 3..];
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            let end = rest.find('>').ok_or(XmlError("unterminated declaration"))?;
            rest = &rest[end + 1..];
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after.find('>').ok_or(XmlError("unterminated end tag"))?;
            let name = local_name(after[..end].trim());
            rest = &after[end + 1..];
            if stack.len() < 2 {
                return Err(XmlError("end tag without start"));
            }
            let mut done = stack.pop().ok_or(XmlError("end tag without start"))?;
            if done.name != name {
                return Err(XmlError("mismatched end tag"));
            }
            done.text = done.text.trim().to_owned();
            stack
                .last_mut()
                .ok_or(XmlError("stack"))?
                .children
                .push(done);
        } else {
            let end = rest.find('>').ok_or(XmlError("unterminated start tag"))?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name = local_name(tag.split(|c: char| c.is_whitespace()).next().unwrap_or(""));
            if name.is_empty() {
                return Err(XmlError("empty tag name"));
            }
            nodes += 1;
            if nodes > MAX_NODES || stack.len() > MAX_DEPTH {
                return Err(XmlError("too large or too deep"));
            }
            let element = XmlElement {
                name: name.to_owned(),
                ..XmlElement::default()
            };
            if self_closing {
                stack
                    .last_mut()
                    .ok_or(XmlError("stack"))?
                    .children
                    .push(element);
            } else {
                stack.push(element);
            }
        }
    }
    if stack.len() != 1 {
        return Err(XmlError("unclosed element"));
    }
    let mut document = stack.pop().ok_or(XmlError("stack"))?;
    if document.children.len() != 1 {
        return Err(XmlError("expected exactly one root element"));
    }
    Ok(document.children.remove(0))
}

fn local_name(tag: &str) -> &str {
    tag.rsplit(':').next().unwrap_or(tag)
}

fn push_text(stack: &mut [XmlElement], raw: &str) -> Result<(), XmlError> {
    if raw.is_empty() {
        return Ok(());
    }
    let top = stack.last_mut().ok_or(XmlError("stack"))?;
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        top.text.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .filter(|&i| i <= 10)
            .ok_or(XmlError("bad entity"))?;
        let entity = &after[..semi];
        let ch = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or(XmlError("bad entity"))?
            }
        };
        top.text.push(ch);
        rest = &after[semi + 1..];
    }
    top.text.push_str(rest);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_settings_like_documents() {
        let doc = r#"<?xml version="1.0"?>
<!-- c --><settings xmlns="x"><localRepository>${user.home}/r &amp; s</localRepository>
<mirrors><mirror><id>m</id><mirrorOf>*</mirrorOf><url>http://h/</url></mirror><mirror/></mirrors>
<x><![CDATA[a<b]]></x></settings>"#;
        let root = parse_xml(doc).unwrap();
        assert_eq!(root.name, "settings");
        assert_eq!(
            root.child_text("localRepository"),
            Some("${user.home}/r & s")
        );
        assert_eq!(root.path(&["mirrors", "mirror", "id"]).unwrap().text, "m");
        assert_eq!(
            root.child("mirrors")
                .unwrap()
                .children_named("mirror")
                .count(),
            2
        );
        assert_eq!(root.child_text("x"), Some("a<b"));
    }

    #[test]
    fn hostile_xml_is_an_error_not_a_panic() {
        for bad in [
            "",
            "<a>",
            "</a>",
            "<a></b>",
            "<a>&bogus;</a>",
            "<a>&#xffffffff;</a>",
            "<>",
            "<a/><b/>",
            "<!--",
        ] {
            assert!(parse_xml(bad).is_err(), "{bad}");
        }
        let deep = "<a>".repeat(1000);
        assert!(parse_xml(&deep).is_err());
        let doc = "<a><b>t&lt;</b><c/></a>";
        for i in 0..doc.len() {
            let _ = parse_xml(&doc[..i]);
        }
    }
}
