// The HTML report's only script: sorting a table by the column whose title
// is clicked (numbers by their data-sort value, text alphabetically; a
// second click reverses). Without it the tables read the same, unsorted.
"use strict";
(function () {
  function value(row, index, numeric) {
    var cell = row.cells[index];
    if (!cell) return numeric ? -Infinity : "";
    if (numeric) {
      var number = parseFloat(cell.getAttribute("data-sort"));
      return isNaN(number) ? -Infinity : number;
    }
    return cell.textContent.toLowerCase();
  }

  function sortBy(table, header, index) {
    var numeric = header.getAttribute("data-type") === "number";
    // Numbers first high, text first A: a second click reverses.
    var descending = header.getAttribute("aria-sort") === "descending" ? false
      : header.getAttribute("aria-sort") === "ascending" ? true : numeric;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, index, numeric), y = value(b, index, numeric);
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.title = "Sort by " + header.textContent;
      header.addEventListener("click", function () { sortBy(table, header, index); });
    });
  });
})();
