"""Prints every sheet of a workbook as JSON: {sheet name: [[cell, ...], ...]}.

The monthly report test reads the gateway's XLSX through openpyxl, a reader that did not
write it, and compares the cells with the report's JSON.
"""

import json
import sys

from openpyxl import load_workbook

workbook = load_workbook(sys.argv[1], read_only=True)
sheets = {}
for sheet in workbook.worksheets:
    sheets[sheet.title] = [list(row) for row in sheet.iter_rows(values_only=True)]
json.dump(sheets, sys.stdout, ensure_ascii=False, default=str)
