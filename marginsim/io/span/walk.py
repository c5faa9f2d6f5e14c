"""The streaming tree walk: complete elements of a partial tree become data and leave memory.

The C parser (:class:`xml.etree.ElementTree.XMLParser` with a
:class:`~xml.etree.ElementTree.TreeBuilder`) appends every element to its parent at its start
tag, so after each block of bytes the partial tree holds everything read so far.
:meth:`TreeWalker.walk` then goes over it: every complete element is handled according to its
*kind* and removed, so memory stays bounded by the largest single record (plus one block), not by
the file. The kinds are the subclass's (:meth:`TreeWalker.kind_of`); the walk knows four:

``"record"``
    handled whole at its end (:meth:`TreeWalker.on_end`) and removed;
``"skip"``
    removed unread;
``"leaf"``
    a header field of its parent: kept (at the front of the parent) until the parent ends;
any other kind
    a container: walked into while it is open, handled at its end like a record.

The walker keeps the stack of open elements, whose tags and sibling indices are the key path
of :class:`~marginsim.io.span.fields.FieldReader`, which it extends.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

from .fields import MAX_ABS_VALUE, FieldReader

__all__ = ["HOLDER", "SUBTREE_KINDS", "TreeWalker"]

#: Element kinds whose whole subtree is handled at the element's end.
SUBTREE_KINDS = frozenset({"record", "skip", "leaf"})
#: Tag of the holder element opened above the document root (not an XML name: never a real tag).
HOLDER = "#document"


class TreeWalker(FieldReader):
    """The open-element stack and the walk over a partial tree; subclasses say what each element is.

    A subclass implements :meth:`kind_of` (what a new child is, from the stack: no side
    effects), :meth:`on_start` (the side effects of a start tag, with checks) and :meth:`on_end`
    (a complete record or container becomes data).

    Attributes
    ----------
    doc
        The holder element above the document root (:data:`HOLDER`): the partial tree.
    kinds, elems
        Kind and element of each open element, outermost first (with :attr:`tags` and
        :attr:`idx` of :class:`~marginsim.io.span.fields.FieldReader`).
    counts
        Per open element (and the holder, first): how many children of each tag it has had.
    kept
        Per open element (and the holder, first): number of header leaves kept at its front.
    """

    def __init__(self, file: str, rate_id: int, max_abs: float = MAX_ABS_VALUE) -> None:
        super().__init__(file, rate_id, max_abs)
        self.kinds: list[str] = []
        self.elems: list[Element] = []
        self.counts: list[dict[str, int]] = [{}]
        self.kept: list[int] = [0]
        self.doc: Element = Element(HOLDER)

    # ---- what the subclass says ------------------------------------------------------------------

    def kind_of(self, tag: str) -> str:
        """What a new child ``tag`` of the element on top of the stack is (no side effects)."""
        raise NotImplementedError

    def on_start(self, tag: str, kind: str) -> None:
        """The side effects of the start tag of an element of kind ``kind``, just pushed.

        Called for containers and skipped elements, not for records and header leaves (the
        elements there are most of: they have no start-tag effects). :attr:`tags` and :attr:`idx`
        already name the element (an error raised here names it); :attr:`kinds` does not have it
        yet (``kinds[-1]`` is the parent's).
        """

    def on_end(self, elem: Element, kind: str) -> None:
        """Turn a complete record or container (on top of the stack) into data."""
        raise NotImplementedError

    # ---- the stack -------------------------------------------------------------------------------

    def push(self, elem: Element, tag: str, kind: str) -> None:
        """Enter ``elem``: onto the open-element stack, with the side effects of its start tag."""
        c = self.counts[-1]
        n = c.get(tag, 0) + 1
        c[tag] = n
        self.tags.append(tag)
        self.idx.append(n)
        self.counts.append({})
        self.elems.append(elem)
        if kind != "record" and kind != "leaf":
            self.on_start(tag, kind)
        self.kinds.append(kind)
        self.kept.append(0)

    def pop(self) -> None:
        """Leave the element on top of the stack."""
        self.tags.pop()
        self.idx.pop()
        self.counts.pop()
        self.elems.pop()
        self.kinds.pop()
        self.kept.pop()

    def walk(self, level: int, final: bool, open_ids: frozenset[int] | None = None) -> None:
        """Turn the complete children of an open element into data and drop them from the tree.

        A child that has a later sibling is complete; the last child may still be open, so it
        waits for the next block (or ``final``, once the whole document has been parsed). The
        open elements are always the last child of their parent, which makes them the ``elems``
        stack: ``elems[level]``, if present, is the open child of ``elems[level - 1]`` (of the
        holder at ``level`` 0) left by an earlier walk. Header leaves are kept at the front of
        their parent (``kept[level]`` of them) until the parent ends; everything else is removed
        once read.

        Parameters
        ----------
        level
            Stack depth of the parent (0: the holder element above the document root).
        final
            True if the parent is known to be complete.
        open_ids
            After a parse error: ``id`` of every element still open (then the last child is
            complete unless it is one of them, and an open record is pushed onto the stack so
            that the key path names it).
        """
        elems = self.elems
        parent = self.doc if level == 0 else elems[level - 1]
        first = self.kept[level]
        kids = parent[first:]
        n = len(kids)
        keep: list[Element] = []
        done = 0
        for i, child in enumerate(kids):
            complete = final or i < n - 1 or (open_ids is not None and id(child) not in open_ids)
            if len(elems) > level and elems[level] is child:  # an open container, already entered
                self.walk(level + 1, complete, open_ids)
                if not complete:
                    break
                self.on_end(child, self.kinds[-1])
                self.pop()
                done += 1
                continue
            tag = child.tag
            kind = self.kind_of(tag)
            if kind in SUBTREE_KINDS:
                if not complete:
                    if open_ids is not None:
                        self.push(child, tag, kind)
                    break
                self.push(child, tag, kind)
                if kind == "leaf":
                    keep.append(child)
                else:
                    self.on_end(child, kind)
                self.pop()
            else:
                self.push(child, tag, kind)
                self.walk(level + 1, complete, open_ids)
                if not complete:
                    break
                self.on_end(child, kind)
                self.pop()
            done += 1
        if done:
            # drop what has been read (frees it), keep the header leaves at the front
            parent[first : first + done] = keep
            self.kept[level] = first + len(keep)
