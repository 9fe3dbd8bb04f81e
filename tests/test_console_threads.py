"""The console's worker threads only read and return: they never write a screen's state nor touch widgets.

Textual widgets and the attributes a screen draws from belong to the UI thread; a thread worker posts
what it read in a message and the screen's handler takes it in. This reads the source of `console/`
(every function decorated `@work(thread=True)` and, followed through `self.<method>(...)` calls, every
method of that name it may run) and names each write or widget call found there.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

CONSOLE = Path(__file__).resolve().parent.parent / "console"

#: calls on a widget or the DOM that belong to the UI thread
UI_CALLS = {
    "query_one",
    "query",
    "query_children",
    "mount",
    "refresh",
    "remove",
    "recompose",
    "call_from_thread",
}
#: methods that change a container in place (`self.points.extend(...)`)
MUTATORS = {"append", "extend", "insert", "add", "update", "clear", "pop", "popleft", "remove", "setdefault"}
MUTATORS |= {"discard", "appendleft", "extendleft", "sort", "reverse"}

Function = ast.FunctionDef | ast.AsyncFunctionDef


def _is_thread_worker(function: Function) -> bool:
    for decorator in function.decorator_list:
        if not isinstance(decorator, ast.Call):
            continue
        name = (
            decorator.func.attr
            if isinstance(decorator.func, ast.Attribute)
            else getattr(decorator.func, "id", "")
        )
        thread = any(
            k.arg == "thread" and isinstance(k.value, ast.Constant) and k.value.value
            for k in decorator.keywords
        )
        if name == "work" and thread:
            return True
    return False


def _rooted_at_self(node: ast.expr) -> bool:
    """`self.x`, `self.x.y`, `self.x[0]`...: an expression naming something the screen holds."""
    while isinstance(node, ast.Attribute | ast.Subscript):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            return True
        node = node.value
    return False


def _targets(node: ast.stmt) -> list[ast.expr]:
    if isinstance(node, ast.Assign):
        return [
            t for target in node.targets for t in (target.elts if isinstance(target, ast.Tuple) else [target])
        ]
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        return [node.target]
    if isinstance(node, ast.Delete):
        return node.targets
    return []


def _calls_on_self(function: Function) -> Iterator[str]:
    """The names of `self.<name>(...)` calls in `function` (methods it may run in the same thread)."""
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
        ):
            yield node.func.attr


def problems_in(function: Function, where: str) -> Iterator[str]:
    """What `function` does that only the UI thread may do."""
    for node in ast.walk(function):
        if isinstance(node, ast.stmt):
            for target in _targets(node):
                if _rooted_at_self(target):
                    yield f"{where}:{node.lineno} writes {ast.unparse(target)}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method, owner = node.func.attr, node.func.value
            if method in UI_CALLS:
                yield f"{where}:{node.lineno} calls {method}()"
            elif method in MUTATORS and _rooted_at_self(owner):
                yield f"{where}:{node.lineno} changes {ast.unparse(owner)} in place ({method})"


def thread_problems(sources: dict[str, str]) -> tuple[list[str], list[str]]:
    """(the thread workers found, what they or the methods they call do on the UI thread's behalf) in
    `sources` (file name -> Python source). A called method is looked up by name in every class: a
    screen's `fetch` may be any screen's."""
    methods: dict[str, list[tuple[Function, str]]] = defaultdict(list)
    workers: list[tuple[Function, str]] = []
    for name, source in sources.items():
        for cls in ast.walk(ast.parse(source)):
            if not isinstance(cls, ast.ClassDef):
                continue
            for item in cls.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    where = f"{name}:{cls.name}.{item.name}"
                    methods[item.name].append((item, where))
                    if _is_thread_worker(item):
                        workers.append((item, where))
    found: list[str] = []
    seen: set[str] = set()
    todo = list(workers)
    while todo:
        function, where = todo.pop()
        if where in seen:
            continue
        seen.add(where)
        found += problems_in(function, where.split(":")[0])
        for called in _calls_on_self(function):
            todo += methods.get(called, [])
    return [where for _, where in workers], sorted(set(found))


def test_no_thread_worker_in_the_console_writes_the_screen_or_touches_a_widget() -> None:
    sources = {str(p.relative_to(CONSOLE.parent)): p.read_text() for p in sorted(CONSOLE.rglob("*.py"))}
    workers, problems = thread_problems(sources)
    # the poll, a version's details and the ledger's replay at least: the check looks at real workers
    assert {w.split(":")[1] for w in workers} >= {
        "OverviewScreen._read",
        "VersionsScreen._details",
        "EventsScreen._read_serving",
    }, workers
    assert problems == [], "\n".join(problems)


def test_the_check_names_what_a_thread_worker_must_not_do() -> None:
    """The check itself: a worker that writes the screen, fills a list it holds or updates a widget
    (itself or through a method it calls) is caught, line by line; one that posts a message is not."""
    source = """
from textual import work

class Screen:
    @work(thread=True, exclusive=True)
    def load(self) -> None:
        self.rows = read()
        self.points.extend(read())
        self.fill(read())

    def fill(self, rows) -> None:
        self.query_one("#table").update(rows)
        self.app.call_from_thread(self.refresh)

    @work(thread=True)
    def fine(self) -> None:
        rows = read()
        rows.append(1)
        self.post_message(Loaded(rows))

    @work()
    def on_the_ui_thread(self) -> None:
        self.rows = []
"""
    workers, problems = thread_problems({"bad.py": source})
    assert workers == ["bad.py:Screen.load", "bad.py:Screen.fine"]
    assert problems == [
        "bad.py:12 calls query_one()",
        "bad.py:13 calls call_from_thread()",
        "bad.py:7 writes self.rows",
        "bad.py:8 changes self.points in place (extend)",
    ]
