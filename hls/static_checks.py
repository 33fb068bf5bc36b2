"""Static checks of the HLS kernel sources for the rules Vitis HLS needs to pipeline at II=1.

g++ compiles code that Vitis HLS would schedule at II 2-32; these checks catch the causes
that can be read off the source (docs/hls.md, "II and dependences"):

* ``unroll-bank``: inside an UNROLLed loop, every index in a partitioned dimension of an
  array (``ARRAY_PARTITION``) uses only unroll variables and constants, so each copy of
  the body touches one fixed bank (a run-time bank is a mux over every bank);
* ``maxi``: inside a PIPELINE loop an m_axi port (``INTERFACE mode = m_axi``) is accessed
  at most once per iteration and never under a condition (``if``/``else``/``?:``/``&&``/
  ``||``, a nested loop, or hidden in a called function that touches the port), which is
  what lets Vitis HLS infer a burst;
* ``reset``: every state array (namespace-scope or ``static`` array) has ``RESET ... off``,
  and ``run_hls.tcl`` does not ask ``config_rtl -reset state|all`` (a reset walker and a
  write-port mux on each memory);
* ``divmod``: no ``/`` or ``%`` whose divisor is not a compile-time constant (a 32-bit
  run-time divider is a long combinational path or a multi-cycle unit); a constexpr
  function that divides by a parameter must get a constant there;
* ``pragma``: every ``PIPELINE`` asks ``II = 1``; a ``DEPENDENCE ... false`` is one of the
  leading pragmas of a pipelined loop, and a comment in the loop or in the
  ``REASON_LINES`` lines above it says why it is exact (it names DEPENDENCE or the
  forwarding that makes it so): an unexplained ``false`` is how a wrong result is
  synthesised silently.

The parser is deliberately small: it understands the subset of C++ the kernels use (brace
blocks, ``for`` loops with their pragmas as the first lines of the body, function
definitions, ``constexpr`` constants, template parameters). Code under
``#ifndef __SYNTHESIS__`` (or an ``#if`` that requires ``!defined(__SYNTHESIS__)``) is not
synthesised and is skipped.

    deltamtl hls-static [FILES ...] [--tcl hls/tcl/run_hls.tcl]
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path

HLS_DIR = Path(__file__).resolve().parent
KERNEL_SOURCES = ("core.cpp", "fetch.cpp", "commit.cpp")
TCL = HLS_DIR / "tcl" / "run_hls.tcl"

_IDENT = re.compile(r"[A-Za-z_]\w*")
_KEYWORDS = frozenset("""
    if else for while do switch case default return break continue sizeof int unsigned
    signed long short char bool const constexpr static uint8_t uint16_t uint32_t uint64_t
    int8_t int16_t int32_t int64_t size_t true false auto void template typename inline
    """.split())


@dataclass(frozen=True)
class Finding:
    rule: str
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: [{self.rule}] {self.message}"


@dataclass
class Loop:
    start: int  # offset of `for`
    body: tuple[int, int]  # [start, end) of the body text (inside the braces)
    var: str | None
    pipeline: bool
    unroll: bool


@dataclass
class Source:
    """One file with comments and non-synthesised blocks blanked (offsets kept)."""

    path: str
    text: str
    loops: list[Loop] = field(default_factory=list)
    raw: str = ""  # the file as written (comments kept), same offsets as `text`
    functions: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def line_of(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1


# ---------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------
def _blank(text: str, a: int, b: int) -> str:
    return text[:a] + re.sub(r"[^\n]", " ", text[a:b]) + text[b:]


def _strip_comments(text: str) -> str:
    out, k, n = [], 0, len(text)
    while k < n:
        if text.startswith("//", k):
            e = text.find("\n", k)
            e = n if e < 0 else e
            out.append(" " * (e - k))
            k = e
        elif text.startswith("/*", k):
            e = text.find("*/", k + 2)
            e = n if e < 0 else e + 2
            out.append(re.sub(r"[^\n]", " ", text[k:e]))
            k = e
        elif text[k] == '"':  # string literal: keep its length, drop its content
            e = k + 1
            while e < n and text[e] != '"':
                e += 2 if text[e] == "\\" else 1
            out.append('"' + " " * (e - k - 1) + '"')
            k = e + 1
        else:
            out.append(text[k])
            k += 1
    return "".join(out)


def _strip_unsynthesised(text: str) -> str:
    """Blank `#ifndef __SYNTHESIS__` / `#if ... !defined(__SYNTHESIS__)` blocks up to their
    #else or #endif (the #else branch is synthesised and kept)."""
    lines = text.split("\n")
    out, depth, skipping = [], 0, None  # skipping: depth of the skipped #if
    for line in lines:
        s = line.strip()
        opens = s.startswith("#if")
        if opens:
            depth += 1
            if skipping is None and (s.startswith("#ifndef __SYNTHESIS__")
                                     or re.search(r"!\s*defined\s*\(?\s*__SYNTHESIS__", s)):
                skipping = depth
                out.append(" " * len(line))
                continue
        elif s.startswith("#endif"):
            if skipping == depth:
                skipping = None
                depth -= 1
                out.append(" " * len(line))
                continue
            depth -= 1
        elif s.startswith(("#else", "#elif")) and skipping == depth:
            skipping = None
            out.append(" " * len(line))
            continue
        out.append(" " * len(line) if skipping is not None else line)
    return "\n".join(out)


def _match(text: str, k: int, open_c: str, close_c: str) -> int:
    """Offset just past the bracket closing the one at text[k]."""
    depth = 0
    for j in range(k, len(text)):
        if text[j] == open_c:
            depth += 1
        elif text[j] == close_c:
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"unbalanced {open_c}{close_c} from offset {k}")


def _statement_end(text: str, k: int) -> int:
    depth = 0
    for j in range(k, len(text)):
        c = text[j]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ";" and depth == 0:
            return j + 1
    return len(text)


def _leading_pragmas(body: str) -> str:
    lines = []
    for line in body.split("\n"):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#pragma"):
            lines.append(s)
        else:
            break
    return " ".join(lines)


def parse(path: str | Path, text: str | None = None) -> Source:
    path = Path(path)
    raw = path.read_text() if text is None else text
    src = Source(str(path), _strip_unsynthesised(_strip_comments(raw)), raw=raw)
    t = src.text
    for m in re.finditer(r"\bfor\s*\(", t):
        hdr_open = m.end() - 1
        hdr_close = _match(t, hdr_open, "(", ")")
        header = t[hdr_open + 1: hdr_close - 1]
        k = hdr_close
        while k < len(t) and t[k].isspace():
            k += 1
        if k < len(t) and t[k] == "{":
            end = _match(t, k, "{", "}")
            body = (k + 1, end - 1)
        else:
            body = (k, _statement_end(t, k))
        pragmas = _leading_pragmas(t[body[0]:body[1]]).upper()
        init = header.split(";")[0]
        var = re.search(r"(\w+)\s*=", init)
        src.loops.append(Loop(m.start(), body, var.group(1) if var else None,
                              "PIPELINE" in pragmas, "UNROLL" in pragmas))
    # function definitions: name(...) [const] { at a place where a statement could start
    for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", t):
        name = m.group(1)
        if name in _KEYWORDS:
            continue
        close = _match(t, m.end() - 1, "(", ")")
        rest = re.match(r"\s*(?:const\s*)?\{", t[close:])
        if not rest:
            continue
        before = t[:m.start()].rstrip()
        if before.endswith(("=", "(", ",", "return", "?", ":")) and not before.endswith("::"):
            continue
        open_b = close + rest.end() - 1
        src.functions.setdefault(name, []).append((open_b + 1, _match(t, open_b, "{", "}") - 1))
    return src


def constants(sources: list[Source], extra_headers: list[Path] = ()) -> set[str]:
    """Names that are compile-time constants: constexpr / #define names, template
    parameters, and ALL_CAPS identifiers (contract and params macros/constants)."""
    names: set[str] = set()
    texts = [s.text for s in sources] + [_strip_comments(p.read_text()) for p in extra_headers]
    for t in texts:
        names |= set(re.findall(r"\bconstexpr\s+[\w:<> ]+?\s+(\w+)\s*(?:=|\[)", t))
        names |= set(re.findall(r"#\s*define\s+(\w+)", t))
        for params in re.findall(r"\btemplate\s*<([^>]*)>", t):
            names |= set(re.findall(r"\b(?:int|size_t|unsigned|bool|uint8_t)\s+(\w+)", params))
        names |= {n for n in _IDENT.findall(t) if re.fullmatch(r"[A-Z][A-Z0-9_]*", n) and len(n) > 1}
    return names


def partitioned(sources: list[Source]) -> dict[str, int]:
    """Array name -> partitioned dimension (1-based; 0 = every dimension)."""
    out: dict[str, int] = {}
    for s in sources:
        for m in re.finditer(r"#pragma\s+HLS\s+ARRAY_PARTITION\b([^\n]*)", s.text, re.IGNORECASE):
            args = m.group(1)
            var = re.search(r"variable\s*=\s*(\w+)", args)
            dim = re.search(r"dim\s*=\s*(\d+)", args)
            if var:
                out[var.group(1)] = int(dim.group(1)) if dim else 1
    return out


def maxi_ports(sources: list[Source]) -> set[str]:
    ports: set[str] = set()
    for s in sources:
        for m in re.finditer(r"#pragma\s+HLS\s+INTERFACE\b([^\n]*)", s.text, re.IGNORECASE):
            if re.search(r"\bm_axi\b", m.group(1)):
                port = re.search(r"port\s*=\s*(\w+)", m.group(1))
                if port:
                    ports.add(port.group(1))
    return ports


def _subscripts(text: str, k: int) -> list[tuple[int, str]]:
    """The [...] groups following offset k (an array name's end): (offset, inner text)."""
    out = []
    while True:
        j = k
        while j < len(text) and text[j].isspace():
            j += 1
        if j >= len(text) or text[j] != "[":
            return out
        end = _match(text, j, "[", "]")
        out.append((j, text[j + 1:end - 1]))
        k = end


def _non_constant_names(expr: str, allowed: set[str]) -> list[str]:
    expr = re.sub(r"\bsizeof\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b\d[\w.]*", " ", expr)  # numeric literals (incl. suffixes)
    bad = []
    for n in _IDENT.findall(expr):
        if n in allowed or n in ("int", "unsigned", "uint32_t", "uint64_t", "int64_t", "size_t"):
            continue
        bad.append(n)
    return bad


def _enclosing(loops: list[Loop], pos: int) -> list[Loop]:
    """Loops whose body contains pos, outermost first."""
    return sorted((lp for lp in loops if lp.body[0] <= pos < lp.body[1]), key=lambda lp: lp.body[0])


# ---------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------
def check_unroll_banks(sources: list[Source], consts: set[str]) -> list[Finding]:
    parts = partitioned(sources)
    findings = []
    # helpers called inside an unrolled loop: their own accesses outside their own unrolled
    # loops run once per copy of the caller's body, with no unroll variable in scope
    in_unrolled: set[str] = set()
    for s in sources:
        for lp in s.loops:
            if lp.unroll:
                in_unrolled |= set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)\s*(?:<[^<>;]*>)?\s*\(",
                                              s.text[lp.body[0]:lp.body[1]]))
    for s in sources:
        helpers = [(a, b, name) for name, spans in s.functions.items() if name in in_unrolled
                   for a, b in spans]
        for name, dim in parts.items():
            for m in re.finditer(rf"(?<![\w.>]){re.escape(name)}\b(?=\s*\[)", s.text):
                chain = _enclosing(s.loops, m.start())
                # the unrolled loops inside the innermost rolled (pipelined or plain) loop
                unrolled: list[Loop] = []
                for lp in chain:
                    unrolled = unrolled + [lp] if lp.unroll else []
                helper = next((h for a, b, h in helpers if a <= m.start() < b), None)
                if not unrolled and helper is None:
                    continue
                allowed = consts | {lp.var for lp in unrolled if lp.var}
                subs = _subscripts(s.text, m.end())
                for d, (_off, expr) in enumerate(subs, 1):
                    if dim not in (0, d):
                        continue
                    bad = _non_constant_names(expr, allowed)
                    if bad:
                        where = "inside an unrolled loop" if unrolled else \
                            f"in {helper}(), which is called inside an unrolled loop"
                        findings.append(Finding(
                            "unroll-bank", s.path, s.line_of(m.start()),
                            f"{name}[{expr.strip()}]: bank index uses {', '.join(sorted(set(bad)))} "
                            f"{where} (use the unroll variable; rotate operands)"))
    return findings


def _conditional(text: str, body: tuple[int, int], pos: int, loops: list[Loop]) -> str | None:
    """Why the code at pos runs only on some iterations of the loop with this body, or None."""
    a = body[0]
    # nested loops between the pipelined loop and pos
    for lp in loops:
        if a <= lp.start and lp.body[0] <= pos < lp.body[1]:
            return "inside a nested loop (several accesses per iteration)"
    # enclosing brace blocks: what opened them
    stack: list[int] = []
    for j in range(a, pos):
        if text[j] == "{":
            stack.append(j)
        elif text[j] == "}" and stack:
            stack.pop()
    for open_b in stack:
        head_start = max(text.rfind(";", a, open_b), text.rfind("{", a, open_b),
                         text.rfind("}", a, open_b), a - 1) + 1
        head = text[head_start:open_b].strip()
        head = re.sub(r"^(#pragma[^\n]*\n\s*)+", "", head)
        if re.match(r"(else\b|if\b|switch\b|case\b|default\b|while\b|do\b)", head):
            return f"under `{head.split('(')[0].strip()}`"
    # the statement holding pos: a braceless if/else, or a short-circuit/?: operand
    st = max(text.rfind(";", a, pos), text.rfind("{", a, pos), text.rfind("}", a, pos), a - 1) + 1
    prefix = text[st:pos]
    lines = [ln for ln in prefix.split("\n") if not ln.strip().startswith("#")]
    prefix = "\n".join(lines).strip()
    if re.match(r"(else\b|if\b)", prefix):
        return "under a braceless `if`/`else`"
    # drop bracket groups that close before pos, then look for conditional operators
    flat, changed = prefix, True
    while changed:
        new = re.sub(r"\([^()\[\]]*\)|\[[^()\[\]]*\]", " ", flat)
        changed, flat = new != flat, new
    if re.search(r"\?|&&|\|\|", flat):
        return "in a conditional operand (`?:`, `&&`, `||`)"
    return None


def check_maxi(sources: list[Source]) -> list[Finding]:
    ports = maxi_ports(sources)
    findings = []
    if not ports:
        return findings
    port_re = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, sorted(ports))) + r")\s*\[")
    # functions (any source) whose body touches a port: a call hides an access
    hiding: set[str] = set()
    grew = True
    while grew:  # transitively: a helper that calls a hiding helper hides an access too
        grew = False
        calls = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, sorted(hiding))) + r")\s*\(") \
            if hiding else None
        for s in sources:
            for name, bodies in s.functions.items():
                if name not in hiding and any(
                        port_re.search(s.text, a, b) or (calls and calls.search(s.text, a, b))
                        for a, b in bodies):
                    hiding.add(name)
                    grew = True
    call_re = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, sorted(hiding))) + r")\s*\(") \
        if hiding else None
    for s in sources:
        for lp in s.loops:
            if not lp.pipeline:
                continue
            a, b = lp.body
            sites: dict[str, list[int]] = {}
            for m in port_re.finditer(s.text, a, b):
                sites.setdefault(m.group(1), []).append(m.start())
            if call_re is not None:
                for m in call_re.finditer(s.text, a, b):
                    for port in ports:  # a hiding helper counts as one access of each port
                        sites.setdefault(port, []).append(m.start())
            for port, where in sites.items():
                line = s.line_of(lp.start)
                if len(where) > 1:
                    findings.append(Finding("maxi", s.path, line,
                                            f"pipelined loop accesses m_axi port {port} "
                                            f"{len(where)} times per iteration (at most once)"))
                for pos in where:
                    why = _conditional(s.text, lp.body, pos, s.loops)
                    if why:
                        findings.append(Finding("maxi", s.path, s.line_of(pos),
                                                f"m_axi access to {port} {why} in a pipelined loop"))
    return findings


def _state_arrays(s: Source) -> list[tuple[str, int]]:
    """Namespace-scope arrays and `static` arrays: (name, offset)."""
    out = []
    func_spans = [span for spans in s.functions.values() for span in spans]
    for m in re.finditer(r"\b(?:struct|class|union)\s+\w+[^;{]*\{", s.text):  # members
        func_spans.append((m.end(), _match(s.text, m.end() - 1, "{", "}")))
    decl = re.compile(r"^[ \t]*(static\s+)?(?:const\s+)?[A-Za-z_][\w:<>, ]*?\s+(\w+)\s*(\[[^\]]+\]\s*)+;",
                      re.MULTILINE)
    for m in decl.finditer(s.text):
        inside = any(a <= m.start() < b for a, b in func_spans)
        if (not inside or m.group(1)) and "return" not in m.group(0):
            out.append((m.group(2), m.start()))
    return out


def check_reset(sources: list[Source], tcl_text: str | None) -> list[Finding]:
    findings = []
    off = set()
    for s in sources:
        off |= set(re.findall(r"#pragma\s+HLS\s+RESET\s+variable\s*=\s*(\w+)\s+off\b", s.text,
                              re.IGNORECASE))
    for s in sources:
        for name, pos in _state_arrays(s):
            if name not in off:
                findings.append(Finding("reset", s.path, s.line_of(pos),
                                        f"state array {name} without `#pragma HLS RESET "
                                        f"variable = {name} off`"))
    if tcl_text is not None:
        for n, line in enumerate(tcl_text.split("\n"), 1):
            code = line.split("#")[0]
            if re.search(r"\bconfig_rtl\b.*-reset\s+(state|all)\b", code):
                findings.append(Finding("reset", "run_hls.tcl", n,
                                        "config_rtl -reset state|all resets every state array "
                                        "(use -reset control)"))
    return findings


def _constexpr_spans(s: Source) -> list[tuple[int, int]]:
    spans = []
    for m in re.finditer(r"\bconstexpr\b", s.text):
        end = _statement_end(s.text, m.start())
        brace = s.text.find("{", m.start(), end)
        if brace >= 0:  # constexpr function: up to its closing brace
            end = _match(s.text, brace, "{", "}")
        spans.append((m.start(), end))
    for m in re.finditer(r"\bstatic_assert\s*\(", s.text):
        spans.append((m.start(), _match(s.text, m.end() - 1, "(", ")")))
    return spans


def _dividing_params(sources: list[Source]) -> dict[str, list[int]]:
    """constexpr functions that divide by one of their parameters -> those parameter indices."""
    out: dict[str, list[int]] = {}
    for s in sources:
        for m in re.finditer(r"\bconstexpr\s+\w+\s+(\w+)\s*\(([^)]*)\)\s*\{", s.text):
            params = [p.strip().split()[-1] if p.strip() else "" for p in m.group(2).split(",")]
            body = s.text[m.end(): _match(s.text, m.end() - 1, "{", "}")]
            idx = [k for k, p in enumerate(params)
                   if p and re.search(rf"[/%]\s*\(?\s*{re.escape(p)}\b", body)]
            if idx:
                out[m.group(1)] = idx
    return out


def _split_args(text: str) -> list[str]:
    args, depth, cur = [], 0, []
    for c in text:
        if c in "([{<" and c != "<":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            args.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    args.append("".join(cur))
    return args


def check_divmod(sources: list[Source], consts: set[str]) -> list[Finding]:
    findings = []
    dividing = _dividing_params(sources)
    for s in sources:
        t = s.text
        skip = _constexpr_spans(s)
        pre = [(m.start(), m.end()) for m in re.finditer(r"^[ \t]*#[^\n]*", t, re.MULTILINE)]
        excluded = skip + pre

        def is_excluded(pos: int, excluded: list[tuple[int, int]] = excluded) -> bool:
            return any(a <= pos < b for a, b in excluded)

        for m in re.finditer(r"(?<![/*])([/%])=?(?![/*=])", t):
            if is_excluded(m.start()):
                continue
            k = m.end()
            while k < len(t) and t[k].isspace():
                k += 1
            if k < len(t) and t[k] == "(":
                operand = t[k: _match(t, k, "(", ")")]
            else:
                om = re.match(r"[\w.:]+(\s*\([^()]*\))?", t[k:])
                operand = om.group(0) if om else t[k:k + 1]
            bad = _non_constant_names(operand, consts)
            if bad:
                findings.append(Finding("divmod", s.path, s.line_of(m.start()),
                                        f"run-time `{m.group(1)}` by `{operand.strip()}` "
                                        f"({', '.join(sorted(set(bad)))} not constant)"))
        for name, idx in dividing.items():
            for m in re.finditer(rf"(?<![\w.]){re.escape(name)}\s*\(", t):
                if is_excluded(m.start()):
                    continue
                args = _split_args(t[m.end(): _match(t, m.end() - 1, "(", ")") - 1])
                for k in idx:
                    if k < len(args) and _non_constant_names(args[k], consts):
                        findings.append(Finding("divmod", s.path, s.line_of(m.start()),
                                                f"{name}(...) divides by argument {k + 1} "
                                                f"`{args[k].strip()}`, not a constant"))
    return findings


REASON_LINES = 30
_REASON = re.compile(r"//[^\n]*(DEPENDENCE|forward)", re.IGNORECASE)


def check_pragmas(sources: list[Source]) -> list[Finding]:
    findings = []
    for s in sources:
        for m in re.finditer(r"#\s*pragma\s+HLS\s+PIPELINE\b([^\n]*)", s.text, re.IGNORECASE):
            if not re.search(r"\bII\s*=\s*1\b", m.group(1), re.IGNORECASE):
                findings.append(Finding("pragma", s.path, s.line_of(m.start()),
                                        f"PIPELINE{m.group(1).rstrip()} does not ask II = 1"))
        for m in re.finditer(r"#\s*pragma\s+HLS\s+DEPENDENCE\b[^\n]*\bdependent\s*=\s*false\b",
                             s.text, re.IGNORECASE):
            inside = [lp for lp in s.loops if lp.body[0] <= m.start() < lp.body[1]]
            loop = max(inside, key=lambda lp: lp.body[0]) if inside else None
            head = s.text[loop.body[0]:m.start()] if loop else ""
            leading = loop is not None and all(
                ln.strip().startswith("#pragma") or not ln.strip() for ln in head.split("\n"))
            if not (leading and loop.pipeline):
                findings.append(Finding("pragma", s.path, s.line_of(m.start()),
                                        "DEPENDENCE false outside the leading pragmas of a "
                                        "pipelined loop"))
                continue
            first = s.raw.rfind("\n", 0, loop.start)
            for _ in range(REASON_LINES):
                first = s.raw.rfind("\n", 0, first) if first > 0 else 0
            if not _REASON.search(s.raw, max(first, 0), loop.body[1]):
                findings.append(Finding("pragma", s.path, s.line_of(m.start()),
                                        "DEPENDENCE false with no comment saying why it is exact "
                                        f"(none naming DEPENDENCE or forwarding in the loop or the "
                                        f"{REASON_LINES} lines above it)"))
    return findings


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------
def kernel_files() -> list[Path]:
    return [HLS_DIR / n for n in KERNEL_SOURCES] + sorted((HLS_DIR / "include").glob("*.h"))


def run_checks(files: list[Path], tcl: Path | None = TCL,
               headers: list[Path] | None = None) -> list[Finding]:
    """Every check over `files` (kernel sources and the headers they include). `headers`
    only contribute constants (default: the generated contract.h / params.h)."""
    if headers is None:
        headers = [HLS_DIR / "generated" / "contract.h", HLS_DIR / "generated" / "params.h"]
    sources = [parse(p) for p in files]
    consts = constants(sources, headers)
    tcl_text = tcl.read_text() if tcl is not None and tcl.is_file() else None
    return (check_unroll_banks(sources, consts) + check_maxi(sources)
            + check_reset(sources, tcl_text) + check_divmod(sources, consts)
            + check_pragmas(sources))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deltamtl hls-static", description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path,
                        help="sources to check (default: the kernels and hls/include/*.h)")
    parser.add_argument("--tcl", type=Path, default=TCL, help="Vitis HLS script (config_rtl)")
    args = parser.parse_args(argv)
    files = args.files or kernel_files()
    findings = run_checks(files, args.tcl)
    for f in findings:
        print(f)
    print(f"static checks: {len(files)} files, {len(findings)} finding(s)")
    return 1 if findings else 0

