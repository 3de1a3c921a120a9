"""Words the model did not understand, marked where they stand: red, a spell checker's wavy underline, a tooltip."""

from __future__ import annotations

import html
import re
from typing import Sequence

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QAbstractTextDocumentLayout, QColor, QPalette, QTextCharFormat, QTextCursor, QTextDocument
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from mmstudio.models.words import not_understood

COLOR = "#c62828"
CAUTION_COLOR = "#8a5a00"  # an answer of a question form the model never learned: it stands, maybe a guess
# The tooltip is also how `wave_underlines` finds the marks again: Qt's HTML cannot ask for a wavy line.
TIP = "Not in the model's vocabulary: the model did not read this word"
# Where an item view's item keeps its marked HTML (the Match table's UserRole holds the plain text).
MARKED_ROLE = int(Qt.ItemDataRole.UserRole) + 1


def marked_html(text: str, unknown: Sequence[str]) -> str:
    """The text as HTML, each occurrence of an unknown word (a whole word, as typed) marked."""
    if not unknown:
        return html.escape(text)
    # Longest first, and not inside a longer word: "of" is not marked inside "offer".
    words = sorted(set(unknown), key=len, reverse=True)
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in words))
    parts, last = [], 0
    for found in pattern.finditer(text):
        parts += [html.escape(text[last:found.start()]),
                  f"<span style='color:{COLOR}; text-decoration: underline' title=\"{html.escape(TIP)}\">"
                  f"{html.escape(found.group())}</span>"]
        last = found.end()
    parts.append(html.escape(text[last:]))
    return "".join(parts)


def wave_underlines(document: QTextDocument) -> int:
    """Turn the marks' straight underline into a red wavy one; returns how many marks it found."""
    spans = []
    block = document.begin()
    while block.isValid():
        fragments = block.begin()
        while not fragments.atEnd():
            fragment = fragments.fragment()
            if fragment.isValid() and fragment.charFormat().toolTip() == TIP:
                spans.append((fragment.position(), fragment.length()))
            fragments += 1
        block = block.next()
    wave = QTextCharFormat()
    wave.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
    wave.setUnderlineColor(QColor(COLOR))
    for start, length in spans:  # formats change only after the walk: merging them may join fragments
        cursor = QTextCursor(document)
        cursor.setPosition(start)
        cursor.setPosition(start + length, QTextCursor.MoveMode.KeepAnchor)
        cursor.mergeCharFormat(wave)
    return len(spans)


def mark_item(item, text: str, unknown: Sequence[str]) -> None:
    """Mark an item view's item (its text stays plain, for editing and lookups); unmark it when none are unknown."""
    item.setData(MARKED_ROLE, marked_html(text, unknown) if unknown else None)
    item.setToolTip(f"{not_understood(unknown, None)}: scored as if they were not there" if unknown else "")


class MarkedTextDelegate(QStyledItemDelegate):
    """Paints an item's marked HTML (MARKED_ROLE) in place of its plain text; the editor still edits the text."""

    def paint(self, painter, option, index) -> None:
        marked = index.data(MARKED_ROLE)
        if not marked:
            super().paint(painter, option, index)
            return
        option = QStyleOptionViewItem(option)
        self.initStyleOption(option, index)
        option.text = ""
        style = option.widget.style() if option.widget is not None else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        area = style.subElementRect(QStyle.SubElement.SE_ItemViewItemText, option, option.widget)
        document = QTextDocument()
        document.setDefaultFont(option.font)
        document.setDocumentMargin(2)
        document.setHtml(marked)
        wave_underlines(document)
        document.setTextWidth(area.width())
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette = QPalette(option.palette)
        if option.state & QStyle.StateFlag.State_Selected:
            context.palette.setColor(QPalette.ColorRole.Text, option.palette.color(QPalette.ColorRole.HighlightedText))
        painter.save()
        painter.translate(area.left(), area.top() + max(0.0, (area.height() - document.size().height()) / 2))
        context.clip = QRectF(0, 0, area.width(), area.height())
        painter.setClipRect(context.clip)
        document.documentLayout().draw(painter, context)
        painter.restore()
