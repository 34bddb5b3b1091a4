//! `yaml.encode(value)` of Tarantool 2.6: the `lyaml` dumper (`third_party/lua-yaml`) on
//! top of a port of libyaml 0.2.5's emitter (`src/emitter.c`, the version Tarantool 2.6 is
//! linked with on Debian). Only what lyaml uses is ported: no anchors, no `%` directives,
//! no canonical mode; indent 2, width 80, unicode output, `\n` breaks.
//!
//! The emitter is event driven with the same look-ahead queue as libyaml; this matters
//! because lyaml's "are we inside a flow collection" test (which forces single quotes on
//! strings) inspects the queued events.

use std::collections::VecDeque;

use crate::field::{to_field, Field};
use crate::number::{fmt_g14, lua_isnumber};
use crate::value::Value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Any,
    Plain,
    Single,
    Double,
    Literal,
    Folded,
}

#[derive(Clone, Debug)]
enum Event {
    StreamStart,
    StreamEnd,
    DocStart,
    DocEnd,
    SeqStart {
        flow: bool,
    },
    SeqEnd,
    MapStart {
        flow: bool,
    },
    MapEnd,
    Scalar {
        value: Vec<u8>,
        tag: Option<&'static [u8]>,
        implicit: bool,
        style: Style,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    StreamStart,
    FirstDocStart,
    DocStart,
    DocContent,
    DocEnd,
    FlowSeqFirstItem,
    FlowSeqItem,
    FlowMapFirstKey,
    FlowMapKey,
    FlowMapSimpleValue,
    FlowMapValue,
    BlockSeqFirstItem,
    BlockSeqItem,
    BlockMapFirstKey,
    BlockMapKey,
    BlockMapSimpleValue,
    BlockMapValue,
    End,
}

#[derive(Default)]
struct ScalarAnalysis {
    length: usize,
    multiline: bool,
    flow_plain_allowed: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
    style: Option<Style>,
}

const TAG_PREFIX: &[u8] = b"tag:yaml.org,2002:";
const BINARY_TAG: &[u8] = b"tag:yaml.org,2002:binary";

struct Emitter {
    out: Vec<u8>,
    events: VecDeque<Event>,
    states: Vec<State>,
    state: State,
    indents: Vec<i64>,
    indent: i64,
    flow_level: i64,
    sequence_context: bool,
    mapping_context: bool,
    simple_key_context: bool,
    column: i64,
    whitespace: bool,
    indention: bool,
    open_ended: i32,
    best_indent: i64,
    best_width: i64,
    tag_handle: Option<&'static [u8]>,
    tag_suffix: Option<Vec<u8>>,
    scalar: ScalarAnalysis,
    error: Option<&'static str>,
}

// --- character classes (yaml_private.h), reading 0 past the end like libyaml's
// NUL-terminated copies.

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn width_at(s: &[u8], i: usize) -> usize {
    let c = at(s, i);
    if c & 0x80 == 0 {
        1
    } else if c & 0xE0 == 0xC0 {
        2
    } else if c & 0xF0 == 0xE0 {
        3
    } else if c & 0xF8 == 0xF0 {
        4
    } else {
        0
    }
}

/// Width used to advance; never 0, so malformed input cannot stall a loop.
fn step(s: &[u8], i: usize) -> usize {
    width_at(s, i).max(1)
}

fn is_printable(s: &[u8], i: usize) -> bool {
    let c = at(s, i);
    let c1 = at(s, i + 1);
    let c2 = at(s, i + 2);
    c == 0x0A
        || (0x20..=0x7E).contains(&c)
        || (c == 0xC2 && c1 >= 0xA0)
        || (c > 0xC2 && c < 0xED)
        || (c == 0xED && c1 < 0xA0)
        || c == 0xEE
        || (c == 0xEF && !(c1 == 0xBB && c2 == 0xBF) && !(c1 == 0xBF && (c2 == 0xBE || c2 == 0xBF)))
}

fn is_break(s: &[u8], i: usize) -> bool {
    let c = at(s, i);
    c == b'\r'
        || c == b'\n'
        || (c == 0xC2 && at(s, i + 1) == 0x85)
        || (c == 0xE2 && at(s, i + 1) == 0x80 && (at(s, i + 2) == 0xA8 || at(s, i + 2) == 0xA9))
}

fn is_space(s: &[u8], i: usize) -> bool {
    at(s, i) == b' '
}

fn is_blank(s: &[u8], i: usize) -> bool {
    at(s, i) == b' ' || at(s, i) == b'\t'
}

fn is_blankz(s: &[u8], i: usize) -> bool {
    is_blank(s, i) || is_break(s, i) || at(s, i) == 0
}

fn is_bom(s: &[u8], i: usize) -> bool {
    at(s, i) == 0xEF && at(s, i + 1) == 0xBB && at(s, i + 2) == 0xBF
}

fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

type EResult = Result<(), &'static str>;

impl Emitter {
    fn new() -> Emitter {
        Emitter {
            out: Vec::new(),
            events: VecDeque::new(),
            states: Vec::new(),
            state: State::StreamStart,
            indents: Vec::new(),
            indent: -1,
            flow_level: 0,
            sequence_context: false,
            mapping_context: false,
            simple_key_context: false,
            column: 0,
            whitespace: true,
            indention: true,
            open_ended: 0,
            // lyaml sets indent 2 and width 2; libyaml turns a width <= 2 * indent into 80.
            best_indent: 2,
            best_width: 80,
            tag_handle: None,
            tag_suffix: None,
            scalar: ScalarAnalysis::default(),
            error: None,
        }
    }

    // --- output primitives

    fn put(&mut self, c: u8) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push(b'\n');
        self.column = 0;
    }

    /// WRITE: copy one character, count one column.
    fn write_char(&mut self, s: &[u8], i: &mut usize) {
        let w = step(s, *i);
        for k in 0..w {
            if let Some(&b) = s.get(*i + k) {
                self.out.push(b);
            }
        }
        *i += w;
        self.column += 1;
    }

    /// WRITE_BREAK.
    fn write_break_char(&mut self, s: &[u8], i: &mut usize) {
        if at(s, *i) == b'\n' {
            self.put_break();
            *i += 1;
        } else {
            let w = step(s, *i);
            for k in 0..w {
                if let Some(&b) = s.get(*i + k) {
                    self.out.push(b);
                }
            }
            *i += w;
            self.column = 0;
        }
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(b' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        indicator: &[u8],
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(b' ');
        }
        let mut i = 0;
        while i < indicator.len() {
            self.write_char(indicator, &mut i);
        }
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn write_tag_handle(&mut self, value: &[u8]) {
        if !self.whitespace {
            self.put(b' ');
        }
        let mut i = 0;
        while i < value.len() {
            self.write_char(value, &mut i);
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_tag_content(&mut self, value: &[u8]) {
        let mut i = 0;
        while i < value.len() {
            let c = at(value, i);
            if is_alpha(c) || b";/?:@&=+$,_.~*'()[]".contains(&c) {
                self.write_char(value, &mut i);
            } else {
                let w = step(value, i);
                for _ in 0..w {
                    let v = at(value, i);
                    i += 1;
                    self.put(b'%');
                    self.put(hex_digit(v >> 4));
                    self.put(hex_digit(v & 0x0F));
                }
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    // --- event loop

    fn emit(&mut self, event: Event) -> EResult {
        if let Some(e) = self.error {
            return Err(e);
        }
        self.events.push_back(event);
        while !self.need_more_events() {
            let Some(event) = self.events.pop_front() else {
                break;
            };
            self.analyze_event(&event);
            if let Err(e) = self.state_machine(&event) {
                self.error = Some(e);
                return Err(e);
            }
        }
        Ok(())
    }

    fn need_more_events(&self) -> bool {
        let Some(head) = self.events.front() else {
            return true;
        };
        let accumulate = match head {
            Event::DocStart => 1,
            Event::SeqStart { .. } => 2,
            Event::MapStart { .. } => 3,
            _ => return false,
        };
        if self.events.len() > accumulate {
            return false;
        }
        let mut level = 0i32;
        for e in &self.events {
            match e {
                Event::StreamStart
                | Event::DocStart
                | Event::SeqStart { .. }
                | Event::MapStart { .. } => level += 1,
                Event::StreamEnd | Event::DocEnd | Event::SeqEnd | Event::MapEnd => level -= 1,
                Event::Scalar { .. } => {}
            }
            if level == 0 {
                return false;
            }
        }
        true
    }

    /// lyaml's `yaml_is_flow_mode`: inside a flow collection, or one is still queued.
    fn in_flow_mode(&self) -> bool {
        self.flow_level > 0
            || self.events.iter().any(|e| {
                matches!(
                    e,
                    Event::SeqStart { flow: true } | Event::MapStart { flow: true }
                )
            })
    }

    fn analyze_event(&mut self, event: &Event) {
        self.tag_handle = None;
        self.tag_suffix = None;
        self.scalar = ScalarAnalysis::default();
        if let Event::Scalar {
            value,
            tag,
            implicit,
            ..
        } = event
        {
            if let (Some(tag), false) = (tag, implicit) {
                // The default directives are "!" -> "!" and "!!" -> "tag:yaml.org,2002:".
                if tag.len() > TAG_PREFIX.len() && tag.starts_with(TAG_PREFIX) {
                    self.tag_handle = Some(b"!!");
                    self.tag_suffix = tag.get(TAG_PREFIX.len()..).map(<[u8]>::to_vec);
                } else if tag.len() > 1 && tag.starts_with(b"!") {
                    self.tag_handle = Some(b"!");
                    self.tag_suffix = tag.get(1..).map(<[u8]>::to_vec);
                } else {
                    self.tag_suffix = Some(tag.to_vec());
                }
            }
            self.analyze_scalar(value);
        }
    }

    fn analyze_scalar(&mut self, s: &[u8]) {
        let a = &mut self.scalar;
        a.length = s.len();
        if s.is_empty() {
            a.multiline = false;
            a.flow_plain_allowed = false;
            a.block_plain_allowed = true;
            a.single_quoted_allowed = true;
            a.block_allowed = false;
            return;
        }
        let mut block_indicators = false;
        let mut flow_indicators = false;
        let mut line_breaks = false;
        let mut special_characters = false;
        let mut leading_space = false;
        let mut leading_break = false;
        let mut trailing_space = false;
        let mut trailing_break = false;
        let mut break_space = false;
        let mut space_break = false;
        let mut previous_space = false;
        let mut previous_break = false;

        if s.starts_with(b"---") || s.starts_with(b"...") {
            block_indicators = true;
            flow_indicators = true;
        }
        let mut preceded_by_whitespace = true;
        let mut followed_by_whitespace = is_blankz(s, width_at(s, 0));
        let mut i = 0usize;
        while i < s.len() {
            let c = at(s, i);
            if i == 0 {
                if b"#,[]{}&*!|>'\"%@`".contains(&c) {
                    flow_indicators = true;
                    block_indicators = true;
                }
                if c == b'?' || c == b':' {
                    flow_indicators = true;
                    if followed_by_whitespace {
                        block_indicators = true;
                    }
                }
                if c == b'-' && followed_by_whitespace {
                    flow_indicators = true;
                    block_indicators = true;
                }
            } else {
                if b",?[]{}".contains(&c) {
                    flow_indicators = true;
                }
                if c == b':' {
                    flow_indicators = true;
                    if followed_by_whitespace {
                        block_indicators = true;
                    }
                }
                if c == b'#' && preceded_by_whitespace {
                    flow_indicators = true;
                    block_indicators = true;
                }
            }
            if !is_printable(s, i) {
                special_characters = true;
            }
            if is_break(s, i) {
                line_breaks = true;
            }
            let w = width_at(s, i);
            if is_space(s, i) {
                if i == 0 {
                    leading_space = true;
                }
                if i + w == s.len() {
                    trailing_space = true;
                }
                if previous_break {
                    break_space = true;
                }
                previous_space = true;
                previous_break = false;
            } else if is_break(s, i) {
                if i == 0 {
                    leading_break = true;
                }
                if i + w == s.len() {
                    trailing_break = true;
                }
                if previous_space {
                    space_break = true;
                }
                previous_space = false;
                previous_break = true;
            } else {
                previous_space = false;
                previous_break = false;
            }
            preceded_by_whitespace = is_blankz(s, i);
            i += step(s, i);
            if i < s.len() {
                followed_by_whitespace = is_blankz(s, i + width_at(s, i));
            }
        }
        a.multiline = line_breaks;
        a.flow_plain_allowed = true;
        a.block_plain_allowed = true;
        a.single_quoted_allowed = true;
        a.block_allowed = true;
        if leading_space || leading_break || trailing_space || trailing_break {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
        }
        if trailing_space {
            a.block_allowed = false;
        }
        if break_space {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
            a.single_quoted_allowed = false;
        }
        if space_break || special_characters {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
            a.single_quoted_allowed = false;
            a.block_allowed = false;
        }
        if line_breaks {
            a.flow_plain_allowed = false;
            a.block_plain_allowed = false;
        }
        if flow_indicators {
            a.flow_plain_allowed = false;
        }
        if block_indicators {
            a.block_plain_allowed = false;
        }
    }

    fn state_machine(&mut self, event: &Event) -> EResult {
        match self.state {
            State::StreamStart => self.emit_stream_start(event),
            State::FirstDocStart | State::DocStart => self.emit_document_start(event),
            State::DocContent => {
                self.states.push(State::DocEnd);
                self.emit_node(event, false, false, false)
            }
            State::DocEnd => self.emit_document_end(event),
            State::FlowSeqFirstItem => self.emit_flow_sequence_item(event, true),
            State::FlowSeqItem => self.emit_flow_sequence_item(event, false),
            State::FlowMapFirstKey => self.emit_flow_mapping_key(event, true),
            State::FlowMapKey => self.emit_flow_mapping_key(event, false),
            State::FlowMapSimpleValue => self.emit_flow_mapping_value(event, true),
            State::FlowMapValue => self.emit_flow_mapping_value(event, false),
            State::BlockSeqFirstItem => self.emit_block_sequence_item(event, true),
            State::BlockSeqItem => self.emit_block_sequence_item(event, false),
            State::BlockMapFirstKey => self.emit_block_mapping_key(event, true),
            State::BlockMapKey => self.emit_block_mapping_key(event, false),
            State::BlockMapSimpleValue => self.emit_block_mapping_value(event, true),
            State::BlockMapValue => self.emit_block_mapping_value(event, false),
            State::End => Err("expected nothing after STREAM-END"),
        }
    }

    fn pop_state(&mut self) -> State {
        self.states.pop().unwrap_or(State::End)
    }

    fn pop_indent(&mut self) -> i64 {
        self.indents.pop().unwrap_or(-1)
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { self.best_indent } else { 0 };
        } else if !indentless {
            self.indent += self.best_indent;
        }
    }

    fn emit_stream_start(&mut self, event: &Event) -> EResult {
        self.open_ended = 0;
        if !matches!(event, Event::StreamStart) {
            return Err("expected STREAM-START");
        }
        self.indent = -1;
        self.column = 0;
        self.whitespace = true;
        self.indention = true;
        self.state = State::FirstDocStart;
        Ok(())
    }

    fn emit_document_start(&mut self, event: &Event) -> EResult {
        match event {
            Event::DocStart => {
                self.open_ended = 0;
                // lyaml's documents are never implicit.
                self.write_indent();
                self.write_indicator(b"---", true, false, false);
                self.state = State::DocContent;
                self.open_ended = 0;
                Ok(())
            }
            Event::StreamEnd => {
                if self.open_ended == 2 {
                    self.write_indicator(b"...", true, false, false);
                    self.open_ended = 0;
                    self.write_indent();
                }
                self.state = State::End;
                Ok(())
            }
            _ => Err("expected DOCUMENT-START or STREAM-END"),
        }
    }

    fn emit_document_end(&mut self, event: &Event) -> EResult {
        if !matches!(event, Event::DocEnd) {
            return Err("expected DOCUMENT-END");
        }
        self.write_indent();
        self.write_indicator(b"...", true, false, false);
        self.open_ended = 0;
        self.write_indent();
        self.state = State::DocStart;
        Ok(())
    }

    fn emit_flow_sequence_item(&mut self, event: &Event, first: bool) -> EResult {
        if first {
            self.write_indicator(b"[", true, true, false);
            self.increase_indent(true, false);
            self.flow_level += 1;
        }
        if matches!(event, Event::SeqEnd) {
            self.flow_level -= 1;
            self.indent = self.pop_indent();
            self.write_indicator(b"]", false, false, false);
            self.state = self.pop_state();
            return Ok(());
        }
        if !first {
            self.write_indicator(b",", false, false, false);
        }
        if self.column > self.best_width {
            self.write_indent();
        }
        self.states.push(State::FlowSeqItem);
        self.emit_node(event, true, false, false)
    }

    fn emit_flow_mapping_key(&mut self, event: &Event, first: bool) -> EResult {
        if first {
            self.write_indicator(b"{", true, true, false);
            self.increase_indent(true, false);
            self.flow_level += 1;
        }
        if matches!(event, Event::MapEnd) {
            self.flow_level -= 1;
            self.indent = self.pop_indent();
            self.write_indicator(b"}", false, false, false);
            self.state = self.pop_state();
            return Ok(());
        }
        if !first {
            self.write_indicator(b",", false, false, false);
        }
        if self.column > self.best_width {
            self.write_indent();
        }
        if self.check_simple_key(event) {
            self.states.push(State::FlowMapSimpleValue);
            self.emit_node(event, false, true, true)
        } else {
            self.write_indicator(b"?", true, false, false);
            self.states.push(State::FlowMapValue);
            self.emit_node(event, false, true, false)
        }
    }

    fn emit_flow_mapping_value(&mut self, event: &Event, simple: bool) -> EResult {
        if simple {
            self.write_indicator(b":", false, false, false);
        } else {
            if self.column > self.best_width {
                self.write_indent();
            }
            self.write_indicator(b":", true, false, false);
        }
        self.states.push(State::FlowMapKey);
        self.emit_node(event, false, true, false)
    }

    fn emit_block_sequence_item(&mut self, event: &Event, first: bool) -> EResult {
        if first {
            let indentless = self.mapping_context && !self.indention;
            self.increase_indent(false, indentless);
        }
        if matches!(event, Event::SeqEnd) {
            self.indent = self.pop_indent();
            self.state = self.pop_state();
            return Ok(());
        }
        self.write_indent();
        self.write_indicator(b"-", true, false, true);
        self.states.push(State::BlockSeqItem);
        self.emit_node(event, true, false, false)
    }

    fn emit_block_mapping_key(&mut self, event: &Event, first: bool) -> EResult {
        if first {
            self.increase_indent(false, false);
        }
        if matches!(event, Event::MapEnd) {
            self.indent = self.pop_indent();
            self.state = self.pop_state();
            return Ok(());
        }
        self.write_indent();
        if self.check_simple_key(event) {
            self.states.push(State::BlockMapSimpleValue);
            self.emit_node(event, false, true, true)
        } else {
            self.write_indicator(b"?", true, false, true);
            self.states.push(State::BlockMapValue);
            self.emit_node(event, false, true, false)
        }
    }

    fn emit_block_mapping_value(&mut self, event: &Event, simple: bool) -> EResult {
        if simple {
            self.write_indicator(b":", false, false, false);
        } else {
            self.write_indent();
            self.write_indicator(b":", true, false, true);
        }
        self.states.push(State::BlockMapKey);
        self.emit_node(event, false, true, false)
    }

    fn emit_node(
        &mut self,
        event: &Event,
        sequence: bool,
        mapping: bool,
        simple_key: bool,
    ) -> EResult {
        self.sequence_context = sequence;
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match event {
            Event::Scalar { .. } => self.emit_scalar(event),
            Event::SeqStart { flow } => {
                self.state = if self.flow_level > 0 || *flow || self.check_empty_sequence() {
                    State::FlowSeqFirstItem
                } else {
                    State::BlockSeqFirstItem
                };
                Ok(())
            }
            Event::MapStart { flow } => {
                self.state = if self.flow_level > 0 || *flow || self.check_empty_mapping() {
                    State::FlowMapFirstKey
                } else {
                    State::BlockMapFirstKey
                };
                Ok(())
            }
            _ => Err("expected SCALAR, SEQUENCE-START, MAPPING-START, or ALIAS"),
        }
    }

    /// The event being processed was popped; the next one is the queue's head.
    fn check_empty_sequence(&self) -> bool {
        matches!(self.events.front(), Some(Event::SeqEnd))
    }

    fn check_empty_mapping(&self) -> bool {
        matches!(self.events.front(), Some(Event::MapEnd))
    }

    fn check_simple_key(&self, event: &Event) -> bool {
        let tag_len =
            self.tag_handle.map_or(0, <[u8]>::len) + self.tag_suffix.as_ref().map_or(0, Vec::len);
        let length = match event {
            Event::Scalar { .. } => {
                if self.scalar.multiline {
                    return false;
                }
                tag_len + self.scalar.length
            }
            Event::SeqStart { .. } => {
                if !self.check_empty_sequence() {
                    return false;
                }
                tag_len
            }
            Event::MapStart { .. } => {
                if !self.check_empty_mapping() {
                    return false;
                }
                tag_len
            }
            _ => return false,
        };
        length <= 128
    }

    fn emit_scalar(&mut self, event: &Event) -> EResult {
        let Event::Scalar {
            value,
            implicit,
            style,
            ..
        } = event
        else {
            return Err("expected SCALAR");
        };
        let style = self.select_scalar_style(*implicit, *style)?;
        self.process_tag();
        self.increase_indent(true, false);
        let allow_breaks = !self.simple_key_context;
        match style {
            Style::Plain | Style::Any => self.write_plain_scalar(value, allow_breaks),
            Style::Single => self.write_single_quoted(value, allow_breaks),
            Style::Double => self.write_double_quoted(value, allow_breaks),
            Style::Literal => self.write_literal(value),
            Style::Folded => self.write_folded(value),
        }
        self.indent = self.pop_indent();
        self.state = self.pop_state();
        Ok(())
    }

    fn select_scalar_style(
        &mut self,
        implicit: bool,
        requested: Style,
    ) -> Result<Style, &'static str> {
        let no_tag = self.tag_handle.is_none() && self.tag_suffix.is_none();
        if no_tag && !implicit {
            return Err("neither tag nor implicit flags are specified");
        }
        let a = &self.scalar;
        let mut style = if requested == Style::Any {
            Style::Plain
        } else {
            requested
        };
        if self.simple_key_context && a.multiline {
            style = Style::Double;
        }
        if style == Style::Plain {
            if (self.flow_level > 0 && !a.flow_plain_allowed)
                || (self.flow_level == 0 && !a.block_plain_allowed)
            {
                style = Style::Single;
            }
            if a.length == 0 && (self.flow_level > 0 || self.simple_key_context) {
                style = Style::Single;
            }
            if no_tag && !implicit {
                style = Style::Single;
            }
        }
        if style == Style::Single && !a.single_quoted_allowed {
            style = Style::Double;
        }
        if (style == Style::Literal || style == Style::Folded)
            && (!a.block_allowed || self.flow_level > 0 || self.simple_key_context)
        {
            style = Style::Double;
        }
        if no_tag && !implicit && style != Style::Plain {
            self.tag_handle = Some(b"!");
        }
        self.scalar.style = Some(style);
        Ok(style)
    }

    fn process_tag(&mut self) {
        if self.tag_handle.is_none() && self.tag_suffix.is_none() {
            return;
        }
        match self.tag_handle {
            Some(handle) => {
                self.write_tag_handle(handle);
                if let Some(suffix) = self.tag_suffix.clone() {
                    self.write_tag_content(&suffix);
                }
            }
            None => {
                self.write_indicator(b"!<", true, false, false);
                if let Some(suffix) = self.tag_suffix.clone() {
                    self.write_tag_content(&suffix);
                }
                self.write_indicator(b">", false, false, false);
            }
        }
    }

    fn write_plain_scalar(&mut self, s: &[u8], allow_breaks: bool) {
        let mut spaces = false;
        let mut breaks = false;
        if !self.whitespace && (!s.is_empty() || self.flow_level > 0) {
            self.put(b' ');
        }
        let mut i = 0;
        while i < s.len() {
            if is_space(s, i) {
                if allow_breaks && !spaces && self.column > self.best_width && !is_space(s, i + 1) {
                    self.write_indent();
                    i += step(s, i);
                } else {
                    self.write_char(s, &mut i);
                }
                spaces = true;
            } else if is_break(s, i) {
                if !breaks && at(s, i) == b'\n' {
                    self.put_break();
                }
                self.write_break_char(s, &mut i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write_char(s, &mut i);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single_quoted(&mut self, s: &[u8], allow_breaks: bool) {
        let mut spaces = false;
        let mut breaks = false;
        self.write_indicator(b"'", true, false, false);
        let mut i = 0;
        while i < s.len() {
            if is_space(s, i) {
                if allow_breaks
                    && !spaces
                    && self.column > self.best_width
                    && i != 0
                    && i != s.len() - 1
                    && !is_space(s, i + 1)
                {
                    self.write_indent();
                    i += step(s, i);
                } else {
                    self.write_char(s, &mut i);
                }
                spaces = true;
            } else if is_break(s, i) {
                if !breaks && at(s, i) == b'\n' {
                    self.put_break();
                }
                self.write_break_char(s, &mut i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if at(s, i) == b'\'' {
                    self.put(b'\'');
                }
                self.write_char(s, &mut i);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        if breaks {
            self.write_indent();
        }
        self.write_indicator(b"'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double_quoted(&mut self, s: &[u8], allow_breaks: bool) {
        let mut spaces = false;
        self.write_indicator(b"\"", true, false, false);
        let mut i = 0;
        while i < s.len() {
            let c = at(s, i);
            if !is_printable(s, i) || is_bom(s, i) || is_break(s, i) || c == b'"' || c == b'\\' {
                let w = width_at(s, i);
                let mut value: u32 = if c & 0x80 == 0 {
                    u32::from(c & 0x7F)
                } else if c & 0xE0 == 0xC0 {
                    u32::from(c & 0x1F)
                } else if c & 0xF0 == 0xE0 {
                    u32::from(c & 0x0F)
                } else if c & 0xF8 == 0xF0 {
                    u32::from(c & 0x07)
                } else {
                    0
                };
                for k in 1..w {
                    value = (value << 6) + u32::from(at(s, i + k) & 0x3F);
                }
                i += w.max(1);
                self.put(b'\\');
                let short = match value {
                    0x00 => Some(b'0'),
                    0x07 => Some(b'a'),
                    0x08 => Some(b'b'),
                    0x09 => Some(b't'),
                    0x0A => Some(b'n'),
                    0x0B => Some(b'v'),
                    0x0C => Some(b'f'),
                    0x0D => Some(b'r'),
                    0x1B => Some(b'e'),
                    0x22 => Some(b'"'),
                    0x5C => Some(b'\\'),
                    0x85 => Some(b'N'),
                    0xA0 => Some(b'_'),
                    0x2028 => Some(b'L'),
                    0x2029 => Some(b'P'),
                    _ => None,
                };
                match short {
                    Some(ch) => self.put(ch),
                    None => {
                        let (letter, digits) = if value <= 0xFF {
                            (b'x', 2)
                        } else if value <= 0xFFFF {
                            (b'u', 4)
                        } else {
                            (b'U', 8)
                        };
                        self.put(letter);
                        for k in (0..digits).rev() {
                            self.put(hex_digit(((value >> (k * 4)) & 0x0F) as u8));
                        }
                    }
                }
                spaces = false;
            } else if is_space(s, i) {
                if allow_breaks
                    && !spaces
                    && self.column > self.best_width
                    && i != 0
                    && i != s.len() - 1
                {
                    self.write_indent();
                    if is_space(s, i + 1) {
                        self.put(b'\\');
                    }
                    i += step(s, i);
                } else {
                    self.write_char(s, &mut i);
                }
                spaces = true;
            } else {
                self.write_char(s, &mut i);
                spaces = false;
            }
        }
        self.write_indicator(b"\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_block_scalar_hints(&mut self, s: &[u8]) {
        if is_space(s, 0) || is_break(s, 0) {
            let hint = [b'0' + self.best_indent as u8];
            self.write_indicator(&hint, false, false, false);
        }
        self.open_ended = 0;
        let mut chomp: Option<&[u8]> = None;
        if s.is_empty() {
            chomp = Some(b"-");
        } else {
            // Step back over the last character.
            let mut p = s.len();
            loop {
                p -= 1;
                if p == 0 || at(s, p) & 0xC0 != 0x80 {
                    break;
                }
            }
            if !is_break(s, p) {
                chomp = Some(b"-");
            } else if p == 0 {
                chomp = Some(b"+");
                self.open_ended = 2;
            } else {
                loop {
                    p -= 1;
                    if p == 0 || at(s, p) & 0xC0 != 0x80 {
                        break;
                    }
                }
                if is_break(s, p) {
                    chomp = Some(b"+");
                    self.open_ended = 2;
                }
            }
        }
        if let Some(hint) = chomp {
            self.write_indicator(hint, false, false, false);
        }
    }

    fn write_literal(&mut self, s: &[u8]) {
        let mut breaks = true;
        self.write_indicator(b"|", true, false, false);
        self.write_block_scalar_hints(s);
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut i = 0;
        while i < s.len() {
            if is_break(s, i) {
                self.write_break_char(s, &mut i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                self.write_char(s, &mut i);
                self.indention = false;
                breaks = false;
            }
        }
    }

    fn write_folded(&mut self, s: &[u8]) {
        let mut breaks = true;
        let mut leading_spaces = true;
        self.write_indicator(b">", true, false, false);
        self.write_block_scalar_hints(s);
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut i = 0;
        while i < s.len() {
            if is_break(s, i) {
                if !breaks && !leading_spaces && at(s, i) == b'\n' {
                    let mut k = 0;
                    while is_break(s, i + k) {
                        k += step(s, i + k);
                    }
                    if !is_blankz(s, i + k) {
                        self.put_break();
                    }
                }
                self.write_break_char(s, &mut i);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                    leading_spaces = is_blank(s, i);
                }
                if !breaks && is_space(s, i) && !is_space(s, i + 1) && self.column > self.best_width
                {
                    self.write_indent();
                    i += step(s, i);
                } else {
                    self.write_char(s, &mut i);
                }
                self.indention = false;
                breaks = false;
            }
        }
    }
}

fn hex_digit(v: u8) -> u8 {
    if v < 10 {
        b'0' + v
    } else {
        b'A' + v - 10
    }
}

/// Tarantool's `utf8_check_printable`: valid UTF-8 whose non-ASCII characters libyaml can
/// print unescaped (or ICU calls printable). Anything else is dumped as `!!binary`.
fn utf8_check_printable(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        let c = at(s, i);
        let width = width_at(s, i);
        if width == 0 || i + width > s.len() {
            return false;
        }
        let mut value: u32 = match width {
            1 => u32::from(c & 0x7F),
            2 => u32::from(c & 0x1F),
            3 => u32::from(c & 0x0F),
            _ => u32::from(c & 0x07),
        };
        for k in 1..width {
            let o = at(s, i + k);
            if o & 0xC0 != 0x80 {
                return false;
            }
            value = (value << 6) + u32::from(o & 0x3F);
        }
        let shortest = match width {
            1 => true,
            2 => value >= 0x80,
            3 => value >= 0x800,
            _ => value >= 0x10000,
        };
        if !shortest {
            return false;
        }
        if c > 0x7F && !is_printable(s, i) && !icu_isprint(value) {
            return false;
        }
        i += width;
    }
    true
}

/// ICU's `u_isprint` for the code points libyaml's table leaves out (C1 controls,
/// surrogates, the BOM, U+FFFE/FFFF, everything above the BMP): not a control, format,
/// surrogate, private-use, noncharacter or unassigned code point. Above the BMP this is an
/// approximation by plane (ICU 72, Unicode 15.0): plane 1 counts as assigned except its
/// format characters; planes 2-3 hold the CJK blocks listed in `assigned_cjk`; planes 4-13
/// are unassigned; in plane 14 only the variation selectors print; planes 15-16 are
/// private use.
fn icu_isprint(cp: u32) -> bool {
    let not_printable = (0x80..=0x9F).contains(&cp)
        || (0xD800..=0xDFFF).contains(&cp)
        || (cp & 0xFFFE) == 0xFFFE
        || cp == 0xFEFF
        || (0xFDD0..=0xFDEF).contains(&cp)
        || cp == 0x110BD
        || cp == 0x110CD
        || (0x13430..=0x1343F).contains(&cp)
        || (0x1BCA0..=0x1BCA3).contains(&cp)
        || (0x1D173..=0x1D17A).contains(&cp)
        || ((0x20000..=0x3FFFF).contains(&cp) && !assigned_cjk(cp))
        || (0x40000..=0xDFFFF).contains(&cp)
        || ((0xE0000..=0xEFFFF).contains(&cp) && !(0xE0100..=0xE01EF).contains(&cp))
        || cp >= 0xF0000;
    !not_printable
}

/// The assigned CJK ideograph blocks of planes 2 and 3 in Unicode 15.0.
fn assigned_cjk(cp: u32) -> bool {
    const BLOCKS: [(u32, u32); 8] = [
        (0x20000, 0x2A6DF),
        (0x2A700, 0x2B739),
        (0x2B740, 0x2B81D),
        (0x2B820, 0x2CEA1),
        (0x2CEB0, 0x2EBE0),
        (0x2F800, 0x2FA1D),
        (0x30000, 0x3134A),
        (0x31350, 0x323AF),
    ];
    BLOCKS.iter().any(|&(lo, hi)| (lo..=hi).contains(&cp))
}

fn yaml_is_null(s: &[u8]) -> bool {
    s == b"~" || s == b"null"
}

fn yaml_is_bool(s: &[u8]) -> bool {
    matches!(s, b"false" | b"no" | b"true" | b"yes")
}

fn base64(data: &[u8]) -> Vec<u8> {
    const CODE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(at(chunk, 0));
        let b1 = u32::from(at(chunk, 1));
        let b2 = u32::from(at(chunk, 2));
        let triple = (b0 << 16) | (b1 << 8) | b2;
        for k in 0..4 {
            if k <= chunk.len() {
                let idx = ((triple >> (18 - 6 * k)) & 0x3F) as usize;
                out.push(CODE.get(idx).copied().unwrap_or(b'A'));
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// lyaml's `dump_node`.
struct Dumper {
    em: Emitter,
}

impl Dumper {
    fn scalar(&mut self, value: Vec<u8>, style: Style) -> EResult {
        self.em.emit(Event::Scalar {
            value,
            tag: None,
            implicit: true,
            style,
        })
    }

    fn dump_node(&mut self, v: &Value) -> EResult {
        match to_field(v) {
            Field::Uint(u) => self.scalar(u.to_string().into_bytes(), Style::Plain),
            Field::Int(i) => self.scalar(i.to_string().into_bytes(), Style::Plain),
            Field::Double(d) => self.scalar(fmt_g14(d).into_bytes(), Style::Plain),
            Field::Bool(b) => self.scalar(
                if b {
                    b"true".to_vec()
                } else {
                    b"false".to_vec()
                },
                Style::Plain,
            ),
            Field::Nil => self.scalar(b"null".to_vec(), Style::Plain),
            Field::Ext(s) => self.scalar(s.as_bytes().to_vec(), Style::Plain),
            Field::UnknownExt(data) => self.binary(data),
            Field::Str(s) => {
                if yaml_is_null(s) || yaml_is_bool(s) || lua_isnumber(s) {
                    return self.scalar(s.to_vec(), Style::Single);
                }
                if !utf8_check_printable(s) {
                    return self.binary(s);
                }
                let style = if self.em.in_flow_mode() {
                    Style::Single
                } else if s.windows(2).any(|w| w == b"\n\n") {
                    Style::Literal
                } else {
                    Style::Any
                };
                self.scalar(s.to_vec(), style)
            }
            Field::Array(items, compact) => {
                self.em.emit(Event::SeqStart { flow: compact })?;
                for item in items {
                    self.dump_node(item)?;
                }
                self.em.emit(Event::SeqEnd)
            }
            Field::Map(entries, compact) => {
                self.em.emit(Event::MapStart { flow: compact })?;
                for (k, v) in entries {
                    self.dump_node(k)?;
                    self.dump_node(v)?;
                }
                self.em.emit(Event::MapEnd)
            }
        }
    }

    fn binary(&mut self, data: &[u8]) -> EResult {
        self.em.emit(Event::Scalar {
            value: base64(data),
            tag: Some(BINARY_TAG),
            implicit: false,
            style: Style::Any,
        })
    }
}

/// The emitter refused an event sequence (libyaml's `emitter->problem`). The dumper only
/// produces well-formed sequences, so this means a bug, not bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YamlError(&'static str);

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "YAML emitter error: {}", self.0)
    }
}

impl std::error::Error for YamlError {}

/// `yaml.encode(value)`: a whole stream with one explicit document (`--- ...\n...\n`).
pub fn to_yaml_document(value: &Value) -> Result<Vec<u8>, YamlError> {
    let mut d = Dumper { em: Emitter::new() };
    let run = |d: &mut Dumper| -> EResult {
        d.em.emit(Event::StreamStart)?;
        d.em.emit(Event::DocStart)?;
        d.dump_node(value)?;
        d.em.emit(Event::DocEnd)?;
        d.em.emit(Event::StreamEnd)
    };
    run(&mut d).map_err(YamlError)?;
    Ok(d.em.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(items: Vec<Value>) -> Value {
        Value::seq(items)
    }

    fn plain(entries: Vec<(&str, Value)>) -> Value {
        Value::plain(
            entries
                .into_iter()
                .map(|(k, v)| (Value::str(k), v))
                .collect(),
        )
    }

    fn text(v: &Value) -> String {
        String::from_utf8_lossy(&to_yaml_document(v).unwrap_or_default()).into_owned()
    }

    #[test]
    fn block_map_with_flow_tuple() {
        let v = plain(vec![
            ("space_id", Value::Num(512.0)),
            (
                "tuple",
                seq(vec![
                    Value::Num(3.0),
                    Value::str("three"),
                    Value::str("yes"),
                ]),
            ),
            ("type", Value::str("INSERT")),
        ]);
        assert_eq!(
            text(&v),
            "---\nspace_id: 512\ntuple: [3, 'three', 'yes']\ntype: INSERT\n...\n"
        );
    }

    #[test]
    fn multiline_string_in_flow() {
        let v = plain(vec![("tuple", seq(vec![Value::str("b\nc'd\"e")]))]);
        assert_eq!(text(&v), "---\ntuple: ['b\n\n    c''d\"e']\n...\n");
    }

    #[test]
    fn binary_and_special() {
        let v = seq(vec![Value::Str(vec![0xff, 0x00, 0x61]), Value::str("a\tb")]);
        assert_eq!(text(&v), "--- [!!binary /wBh, \"a\\tb\"]\n...\n");
    }

    #[test]
    fn long_flow_sequences_wrap_at_80_columns() {
        let items: Vec<Value> = (0..30).map(|i| Value::Num(f64::from(1000 + i))).collect();
        let v = plain(vec![("tuple", seq(items))]);
        let out = text(&v);
        assert!(out.contains(", 1012,\n  1013, "), "{out}");
    }

    #[test]
    fn base64_matches_lyaml() {
        assert_eq!(base64(b"abc"), b"YWJj");
        assert_eq!(base64(b"ab"), b"YWI=");
        assert_eq!(base64(b"a"), b"YQ==");
    }
}
