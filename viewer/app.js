// wearfhir viewer: reads the launched patient's summary Observations and draws them as inline SVG plus tables.
//
// fhirclient owns the launch and the tokens (sessionStorage); this file only queries and draws. Every date shown
// is the local date *as written* in the resource (the first 10 characters of the dateTime): a dateTime is never
// turned into a Date in the browser's time zone, which would move a day window to the next or previous day.
"use strict";
(function () {
  var LOINC = "http://loinc.org";
  var STATS = "http://terminology.hl7.org/CodeSystem/observation-statistics";
  var SVG = "http://www.w3.org/2000/svg";
  var CODES = {
    cgmPanel: "107931-8", mean: "97507-8", tir: "106793-3", gmi: "97506-0", cv: "104638-2",
    wear: "104636-6", active: "104637-4", reading: "99504-3",
    heartRate: "8867-4", steps: "41950-7", energy: "41979-6", sleep: "93832-4"
  };
  // The five consensus ranges (Battelino et al. 2019), in the IG's order, with their goals.
  var BANDS = [
    { code: "104642-4", label: "Very low (<54 mg/dL)", goal: "<1 %", colour: "#8b0000" },
    { code: "104641-6", label: "Low (54–69 mg/dL)", goal: "<4 %", colour: "#e8392c" },
    { code: "97510-2", label: "In range (70–180 mg/dL)", goal: ">70 %", colour: "#2e9e44" },
    { code: "104640-8", label: "High (181–250 mg/dL)", goal: "<25 %", colour: "#f5b400" },
    { code: "104639-0", label: "Very high (>250 mg/dL)", goal: "<5 %", colour: "#f07b00" }
  ];
  var STAGE_COLOURS = ["#1f4e9c", "#6c8fd6", "#9b59b6", "#e67e22", "#95a5a6", "#c0392b"];

  // ---- dates, from the text as written -----------------------------------------------------------------
  function localDate(text) { return text ? text.slice(0, 10) : ""; }
  function dayNumber(date) {  // days since 1970-01-01 of a YYYY-MM-DD (calendar arithmetic in UTC: zone-free)
    return Math.round(Date.UTC(+date.slice(0, 4), +date.slice(5, 7) - 1, +date.slice(8, 10)) / 86400000);
  }
  function dateOfDay(n) { return new Date(n * 86400000).toISOString().slice(0, 10); }
  function addDays(date, n) { return dateOfDay(dayNumber(date) + n); }
  function minutesOfDay(text) {
    return text.length < 16 ? 0 : (+text.slice(11, 13)) * 60 + (+text.slice(14, 16)) + (+text.slice(17, 19) || 0) / 60;
  }
  function isMidnight(text) { return text.length === 10 || text.slice(11, 19) === "00:00:00"; }
  // The last day a period covers: a date end is inclusive (CGM IG); a dateTime end at midnight is exclusive.
  function lastDay(period) {
    var end = period.end || period.start;
    return end.length > 10 && isMidnight(end) && end.slice(0, 10) > period.start.slice(0, 10)
      ? addDays(localDate(end), -1) : localDate(end);
  }
  function isDayWindow(obs) {
    var p = obs.effectivePeriod;
    return !!(p && p.start && p.end && isMidnight(p.start) && isMidnight(p.end) && lastDay(p) === localDate(p.start));
  }
  // A night runs noon to noon: sleep that starts before noon belongs to the night of the previous date.
  function nightOf(obs) {
    var start = obs.effectivePeriod ? obs.effectivePeriod.start : obs.effectiveDateTime;
    return minutesOfDay(start) < 720 && start.length > 10 ? addDays(localDate(start), -1) : localDate(start);
  }

  // ---- FHIR helpers ----------------------------------------------------------------------------------------
  function hasCode(concept, system, code) {
    return !!(concept && (concept.coding || []).some(function (c) { return c.system === system && c.code === code; }));
  }
  function isCode(obs, code) { return hasCode(obs.code, LOINC, code); }
  function statistic(obs, code) {  // a component coded with observation-statistics (minimum, maximum, count …)
    var found = (obs.component || []).filter(function (c) { return hasCode(c.code, STATS, code); })[0];
    return found ? value(found) : null;
  }
  function value(element) {
    if (element.valueQuantity) { return element.valueQuantity.value; }
    if (element.valueInteger !== undefined) { return element.valueInteger; }
    return null;
  }
  function unit(element) { return element && element.valueQuantity ? element.valueQuantity.unit || "" : ""; }
  function componentValue(obs, code) {
    var found = (obs.component || []).filter(function (c) { return hasCode(c.code, LOINC, code); })[0];
    return found ? value(found) : null;
  }
  function notes(obs) {
    var out = (obs.note || []).map(function (n) { return n.text; });
    (obs.interpretation || []).forEach(function (i) { if (i.text) { out.push(i.text); } });
    return out.filter(Boolean);
  }

  // ---- formatting ----------------------------------------------------------------------------------------------
  function fmt(x, digits) {
    if (x === null || x === undefined || isNaN(x)) { return "–"; }
    return Number(x).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 1 : digits,
      minimumFractionDigits: 0 });
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return node;
  }
  function svgEl(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function table(caption, headers, rows, id) {
    var attrs = id ? { id: id } : {};
    return el("table", attrs, [
      el("caption", {}, [caption]),
      el("thead", {}, [el("tr", {}, headers.map(function (h) { return el("th", { scope: "col" }, [h]); }))]),
      el("tbody", {}, rows.map(function (r) {
        return el("tr", { "data-date": r.date || "" }, r.cells.map(function (c, i) {
          return i === 0 ? el("th", { scope: "row" }, [c]) : el("td", {}, [c]);
        }));
      }))
    ]);
  }
  function figure(svg, numbers) {  // the chart and, beside it, the same numbers as text (a scrollable region)
    var label = numbers.querySelector && numbers.querySelector("caption");
    return el("div", { "class": "figure" }, [svg, el("div", { "class": "numbers", tabindex: "0", role: "region",
      "aria-label": label ? label.textContent : "numbers" }, [numbers])]);
  }
  function legend(items) {  // [[label, colour]]: swatches drawn as SVG (no inline styles under the CSP)
    return el("ul", { "class": "legend" }, items.map(function (item) {
      var swatch = svgEl("svg", { width: 12, height: 12, "aria-hidden": "true" });
      swatch.appendChild(svgEl("rect", { width: 12, height: 12, fill: item[1] }));
      return el("li", {}, [swatch, " " + item[0]]);
    }));
  }
  function dl(pairs, id) {
    var node = el("dl", { "class": "stats", id: id });
    pairs.forEach(function (p) {
      node.appendChild(el("dt", {}, [p[0]]));
      node.appendChild(el("dd", { "data-key": p[2] || "" }, [p[1]]));
    });
    return node;
  }

  // ---- charts (small, hand-written SVG) -------------------------------------------------------------------
  var W = 640, H = 220, PAD = { l: 44, r: 10, t: 10, b: 30 };
  function chart(title) {
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title });
    svg.appendChild(svgEl("title", {}, title));
    return svg;
  }
  function scale(d0, d1, r0, r1) {
    var span = d1 - d0 || 1;
    return function (x) { return r0 + (x - d0) / span * (r1 - r0); };
  }
  function yAxis(svg, y, lo, hi, ticks) {
    for (var i = 0; i <= ticks; i += 1) {
      var v = lo + (hi - lo) * i / ticks, yy = y(v);
      svg.appendChild(svgEl("line", { x1: PAD.l, x2: W - PAD.r, y1: yy, y2: yy, stroke: "#eee" }));
      svg.appendChild(svgEl("text", { x: PAD.l - 4, y: yy + 4, "text-anchor": "end", "font-size": 10 }, fmt(v, 0)));
    }
  }
  function xLabels(svg, x, days) {
    var every = Math.max(1, Math.ceil(days.length / 10));
    days.forEach(function (d, i) {
      if (i % every === 0) {
        svg.appendChild(svgEl("text", { x: x(i + 0.5), y: H - 10, "text-anchor": "middle", "font-size": 10 },
          d.slice(5)));
      }
    });
  }
  function barChart(title, rows, key, colour) {  // rows: [{date, value}]
    var svg = chart(title);
    var hi = Math.max.apply(null, rows.map(function (r) { return r[key] || 0; }).concat([1]));
    var x = scale(0, rows.length, PAD.l, W - PAD.r), y = scale(0, hi * 1.1, H - PAD.b, PAD.t);
    yAxis(svg, y, 0, hi * 1.1, 4);
    rows.forEach(function (r, i) {
      var top = y(r[key] || 0);
      svg.appendChild(svgEl("rect", { x: x(i) + 2, y: top, width: Math.max(1, x(1) - x(0) - 4),
        height: H - PAD.b - top, fill: colour }));
    });
    xLabels(svg, x, rows.map(function (r) { return r.date; }));
    return svg;
  }

  // ---- data ------------------------------------------------------------------------------------------------------
  function search(client, query) {
    // pageLimit 0: fhirclient follows every link[next]; flat: one array of resources (matches and includes).
    return client.request(query, { pageLimit: 0, flat: true });
  }
  function byCode(patientId, codes, extra) {
    return "Observation?patient=" + encodeURIComponent(patientId) + "&code=" +
      codes.map(function (c) { return encodeURIComponent(LOINC + "|" + c); }).join(",") + "&_count=1000" + (extra || "");
  }

  // ---- sections --------------------------------------------------------------------------------------------------
  function renderPatient(patient, id) {
    var name = "";
    var n = (patient && patient.name || [])[0];
    if (n) { name = n.text || [(n.given || []).join(" "), n.family || ""].join(" ").trim(); }
    var node = document.getElementById("patient");
    node.textContent = "";
    node.appendChild(el("span", { id: "patient-name" }, [name || "Unnamed patient"]));
    node.appendChild(document.createTextNode(" — "));
    node.appendChild(el("span", { id: "patient-id" }, ["Patient/" + id]));
  }

  function renderPanels(resources, readings) {
    var byId = {};
    resources.forEach(function (r) { byId[r.resourceType + "/" + r.id] = r; });
    var panels = resources.filter(function (r) { return isCode(r, CODES.cgmPanel) && r.hasMember; });
    panels.sort(function (a, b) { return a.effectivePeriod.start < b.effectivePeriod.start ? -1 : 1; });
    var box = document.getElementById("cgm-periods");
    box.textContent = "";
    if (!panels.length) { box.appendChild(el("p", { "class": "empty" }, ["No CGM summary panel for this patient."])); }
    var periods = panels.map(function (panel, index) {
      var members = (panel.hasMember || []).map(function (m) { return byId[m.reference]; }).filter(Boolean);
      var member = function (code) { return members.filter(function (m) { return isCode(m, code); })[0]; };
      var first = localDate(panel.effectivePeriod.start), last = lastDay(panel.effectivePeriod);
      var tir = member(CODES.tir), mean = member(CODES.mean), gmi = member(CODES.gmi), cv = member(CODES.cv);
      var wear = member(CODES.wear), active = member(CODES.active);
      var bands = BANDS.map(function (b) { return tir ? componentValue(tir, b.code) : null; });
      var period = { first: first, last: last, bands: bands };
      var id = "period-" + index;
      var section = el("article", { "class": "period", id: id, "data-first": first, "data-last": last }, [
        el("h3", {}, ["Reporting period " + first + " – " + last])
      ]);
      section.appendChild(dl([
        ["Mean glucose", mean ? fmt(value(mean)) + " " + unit(mean) : "–", "mean"],
        ["GMI", gmi ? fmt(value(gmi)) + " %" : "–", "gmi"],
        ["Coefficient of variation", cv ? fmt(value(cv)) + " %" : "–", "cv"],
        ["Days of wear", wear ? fmt(value(wear), 0) + " of " + (dayNumber(last) - dayNumber(first) + 1) : "–", "wear"],
        ["Sensor active", active ? fmt(value(active)) + " %" : "–", "active"]
      ], id + "-stats"));
      var messages = [];
      [panel].concat(members).forEach(function (m) { messages = messages.concat(notes(m)); });
      messages.filter(function (m, i) { return messages.indexOf(m) === i; }).forEach(function (m) {
        section.appendChild(el("p", { "class": "note", "data-key": "note" }, [m]));
      });
      section.appendChild(legend(BANDS.map(function (b) { return [b.label, b.colour]; })));
      section.appendChild(figure(rangeBars("Time in ranges, " + first + " – " + last, [period]),
        table("Time in ranges (consensus goal)", ["Range", "Time", "Goal"], BANDS.map(function (b, i) {
          return { cells: [b.label, fmt(bands[i]) + " %", b.goal] };
        }), id + "-ranges")));
      var own = readings.filter(function (r) {
        var d = localDate(r.effectiveDateTime);
        return d >= first && d <= last;
      });
      section.appendChild(glucoseTrace(own, first, last, id));
      box.appendChild(section);
      return period;
    });
    renderTirAcross(periods);
  }

  function rangeBars(title, periods) {  // one stacked horizontal bar per period
    var h = 26 * periods.length + 30;
    var svg = svgEl("svg", { viewBox: "0 0 " + W + " " + h, role: "img", "aria-label": title });
    svg.appendChild(svgEl("title", {}, title));
    var x = scale(0, 100, 150, W - PAD.r);
    periods.forEach(function (p, row) {
      var at = 0, y = 8 + row * 26;
      svg.appendChild(svgEl("text", { x: 4, y: y + 14, "font-size": 10 }, p.first + " – " + p.last.slice(5)));
      BANDS.forEach(function (b, i) {
        var v = p.bands[i] || 0;
        svg.appendChild(svgEl("rect", { x: x(at), y: y, width: Math.max(0, x(at + v) - x(at)), height: 20,
          fill: b.colour }));
        at += v;
      });
    });
    return svg;
  }

  function glucoseTrace(readings, first, last, id) {
    var days = [];
    for (var n = dayNumber(first); n <= dayNumber(last); n += 1) { days.push(dateOfDay(n)); }
    var svg = chart("CGM glucose, " + first + " – " + last + " (mg/dL; target 70–180 shaded)");
    var x = scale(0, days.length, PAD.l, W - PAD.r), y = scale(40, 400, H - PAD.b, PAD.t);
    svg.appendChild(svgEl("rect", { x: PAD.l, y: y(180), width: W - PAD.l - PAD.r, height: y(70) - y(180),
      fill: "#cdebd3" }));
    yAxis(svg, y, 40, 400, 4);
    [70, 180].forEach(function (v) {
      svg.appendChild(svgEl("line", { x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v), stroke: "#2e9e44",
        "stroke-dasharray": "4 3" }));
      svg.appendChild(svgEl("text", { x: W - PAD.r - 2, y: y(v) - 3, "text-anchor": "end", "font-size": 10 }, v));
    });
    var points = readings.map(function (r) {
      return { t: dayNumber(localDate(r.effectiveDateTime)) - dayNumber(first) + minutesOfDay(r.effectiveDateTime) / 1440,
        v: value(r), mgdl: unit(r) !== "mmol/L" };
    }).filter(function (p) { return p.v !== null; }).sort(function (a, b) { return a.t - b.t; });
    var path = "", prev = null;
    points.forEach(function (p) {
      var v = p.mgdl ? p.v : p.v * 18.016;
      path += (prev === null || p.t - prev > 16 / 1440 ? "M" : "L") + x(p.t).toFixed(1) + "," +
        y(Math.max(40, Math.min(400, v))).toFixed(1);
      prev = p.t;
    });
    if (path) { svg.appendChild(svgEl("path", { d: path, fill: "none", stroke: "#1f4e9c", "stroke-width": 1 })); }
    xLabels(svg, x, days);
    var perDay = days.map(function (d) {
      var vs = readings.filter(function (r) { return localDate(r.effectiveDateTime) === d; }).map(value);
      var sum = vs.reduce(function (a, b) { return a + b; }, 0);
      return { date: d, cells: [d, vs.length, vs.length ? fmt(sum / vs.length) : "–",
        vs.length ? fmt(Math.min.apply(null, vs), 0) : "–", vs.length ? fmt(Math.max.apply(null, vs), 0) : "–"] };
    });
    return figure(svg, table("Glucose readings per day", ["Date", "Readings", "Mean", "Min", "Max"], perDay,
      id + "-days"));
  }

  function renderTirAcross(periods) {
    var box = document.getElementById("tir-body");
    box.textContent = "";
    if (!periods.length) { box.appendChild(el("p", { "class": "empty" }, ["No reporting periods."])); return; }
    box.appendChild(figure(rangeBars("Time in ranges per reporting period", periods),
      table("Time in ranges per period (%)", ["Period"].concat(BANDS.map(function (b) { return b.label; })),
        periods.map(function (p) {
          return { date: p.first, cells: [p.first + " – " + p.last].concat(p.bands.map(function (v) { return fmt(v); })) };
        }), "tir-table")));
  }

  function daily(resources, code) {  // one row per local day (day windows only), sorted by date
    var rows = resources.filter(function (r) { return isCode(r, code) && isDayWindow(r); }).map(function (r) {
      return { date: localDate(r.effectivePeriod.start), value: value(r), min: statistic(r, "minimum"),
        max: statistic(r, "maximum"), count: statistic(r, "count"), unit: unit(r) };
    });
    return rows.sort(function (a, b) { return a.date < b.date ? -1 : 1; });
  }

  function renderHeartRate(resources) {
    var rows = daily(resources, CODES.heartRate), box = document.getElementById("heart-rate");
    box.appendChild(el("h3", {}, ["Heart rate, daily (range and mean)"]));
    if (!rows.length) { box.appendChild(el("p", { "class": "empty" }, ["No daily heart-rate summaries."])); return; }
    var svg = chart("Heart rate per day: minimum–maximum band and mean (beats/min)");
    var lo = Math.min.apply(null, rows.map(function (r) { return r.min === null ? r.value : r.min; }));
    var hi = Math.max.apply(null, rows.map(function (r) { return r.max === null ? r.value : r.max; }));
    lo = Math.max(0, Math.floor((lo - 10) / 10) * 10); hi = Math.ceil((hi + 10) / 10) * 10;
    var x = scale(0, rows.length, PAD.l, W - PAD.r), y = scale(lo, hi, H - PAD.b, PAD.t);
    yAxis(svg, y, lo, hi, 4);
    var upper = rows.map(function (r, i) { return x(i + 0.5).toFixed(1) + "," + y(r.max === null ? r.value : r.max).toFixed(1); });
    var lower = rows.map(function (r, i) { return x(i + 0.5).toFixed(1) + "," + y(r.min === null ? r.value : r.min).toFixed(1); });
    svg.appendChild(svgEl("polygon", { points: upper.concat(lower.reverse()).join(" "), fill: "#f6c9c9" }));
    svg.appendChild(svgEl("polyline", { points: rows.map(function (r, i) {
      return x(i + 0.5).toFixed(1) + "," + y(r.value).toFixed(1); }).join(" "), fill: "none", stroke: "#a4262c",
      "stroke-width": 2 }));
    xLabels(svg, x, rows.map(function (r) { return r.date; }));
    box.appendChild(figure(svg, table("Heart rate per day (beats/min)", ["Date", "Min", "Mean", "Max", "Samples"],
      rows.map(function (r) {
        return { date: r.date, cells: [r.date, fmt(r.min, 0), fmt(r.value), fmt(r.max, 0), fmt(r.count, 0)] };
      }), "heart-rate-table")));
  }

  function renderTotals(resources, code, boxId, title, unitText, colour) {
    var rows = daily(resources, code), box = document.getElementById(boxId);
    box.appendChild(el("h3", {}, [title]));
    if (!rows.length) { box.appendChild(el("p", { "class": "empty" }, ["No daily summaries."])); return; }
    box.appendChild(figure(barChart(title + " (" + unitText + ")", rows, "value", colour),
      table(title + " (" + unitText + ")", ["Date", "Total"], rows.map(function (r) {
        return { date: r.date, cells: [r.date, fmt(r.value, 0)] };
      }), boxId + "-table")));
  }

  function renderSleep(resources) {
    var box = document.getElementById("sleep");
    box.appendChild(el("h3", {}, ["Sleep per night (minutes by stage)"]));
    var nights = resources.filter(function (r) { return isCode(r, CODES.sleep) && r.effectivePeriod; })
      .map(function (r) { return { date: nightOf(r), obs: r }; })
      .sort(function (a, b) { return a.date < b.date ? -1 : 1; });
    if (!nights.length) { box.appendChild(el("p", { "class": "empty" }, ["No sleep summaries."])); return; }
    var stages = [];  // stage components (everything but "in bed"), in first-seen order
    nights.forEach(function (n) {
      (n.obs.component || []).forEach(function (c) {
        var coding = (c.code.coding || [])[0] || {};
        var label = coding.display || c.code.text || coding.code;
        if (coding.code !== "in_bed" && stages.indexOf(label) < 0) { stages.push(label); }
      });
    });
    var minutes = function (obs, label) {
      var c = (obs.component || []).filter(function (c) {
        var coding = (c.code.coding || [])[0] || {};
        return (coding.display || c.code.text || coding.code) === label;
      })[0];
      return c ? value(c) || 0 : 0;
    };
    var svg = chart("Sleep per night, minutes by stage");
    var hi = Math.max.apply(null, nights.map(function (n) {
      return stages.reduce(function (a, s) { return a + minutes(n.obs, s); }, 0);
    }).concat([60]));
    var x = scale(0, nights.length, PAD.l, W - PAD.r), y = scale(0, hi * 1.1, H - PAD.b, PAD.t);
    yAxis(svg, y, 0, hi * 1.1, 4);
    nights.forEach(function (n, i) {
      var at = 0;
      stages.forEach(function (s, k) {
        var m = minutes(n.obs, s);
        svg.appendChild(svgEl("rect", { x: x(i) + 2, y: y(at + m), width: Math.max(1, x(1) - x(0) - 4),
          height: y(at) - y(at + m), fill: STAGE_COLOURS[k % STAGE_COLOURS.length] }));
        at += m;
      });
    });
    xLabels(svg, x, nights.map(function (n) { return n.date; }));
    box.appendChild(legend(stages.map(function (s, k) { return [s, STAGE_COLOURS[k % STAGE_COLOURS.length]]; })));
    box.appendChild(figure(svg, table("Sleep per night (minutes)", ["Night of", "Asleep"].concat(stages),
      nights.map(function (n) {
        return { date: n.date, cells: [n.date, fmt(value(n.obs))].concat(stages.map(function (s) {
          return fmt(minutes(n.obs, s));
        })) };
      }), "sleep-table")));
  }

  function fail(error) {
    var box = document.getElementById("error");
    box.hidden = false;
    box.textContent = "Could not load the data: " + (error && error.message ? error.message : String(error));
    document.body.setAttribute("data-state", "error");
  }

  function connect() {
    var params = new URLSearchParams(window.location.search);
    var open = params.get("fhirServiceUrl");
    if (open) {  // open-server mode: a FHIR server without authorization (e.g. a local HAPI)
      if (!params.get("patient")) { return Promise.reject(new Error("open-server mode needs &patient=ID")); }
      return Promise.resolve(FHIR.client({ serverUrl: open, tokenResponse: { patient: params.get("patient") } }));
    }
    return FHIR.oauth2.ready();
  }

  function main() {
    connect().then(function (client) {
      var pid = client.patient.id;
      if (!pid) { throw new Error("the launch gave no patient"); }
      return Promise.all([
        client.request("Patient/" + encodeURIComponent(pid)),
        search(client, byCode(pid, [CODES.cgmPanel], "&_include=Observation:has-member")),
        search(client, byCode(pid, [CODES.reading])),
        search(client, byCode(pid, [CODES.heartRate, CODES.steps, CODES.energy, CODES.sleep]))
      ]).then(function (got) {
        renderPatient(got[0], pid);
        var readings = got[2].filter(function (r) { return isCode(r, CODES.reading) && r.effectiveDateTime; });
        renderPanels(got[1], readings);
        renderHeartRate(got[3]);
        renderTotals(got[3], CODES.steps, "steps", "Steps per day", "steps", "#3a7ca5");
        renderTotals(got[3], CODES.energy, "energy", "Active energy per day", "kcal", "#e07b39");
        renderSleep(got[3]);
        document.body.setAttribute("data-state", "ready");
        window.wearfhirReadyMs = performance.now();
      });
    }).catch(fail);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", main); } else { main(); }
})();
