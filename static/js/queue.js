/*
 * Review queue keyboard shortcuts and SLA countdowns.
 *
 * j / k     move the selection to the next / previous item
 * a / r     accept / reject the selected item (clicks its Accept or Reject button)
 * e         open the selected item's revise form, focus its first field and select its value
 * Enter     save the revise form, also from its <select> (see submitFromSelect)
 * Escape    close the revise form
 *
 * Shortcuts are ignored while the focus is in a text field, a select or an editable element,
 * and when Ctrl, Alt or Meta is held, so typing a note never triggers an action.
 */
(function () {
  "use strict";

  const ITEM_SELECTOR = ".items > .item";
  const COUNTDOWN_INTERVAL_MS = 15000;

  function items() {
    return Array.from(document.querySelectorAll(ITEM_SELECTOR));
  }

  function selectedItem() {
    return document.querySelector(ITEM_SELECTOR + '[aria-selected="true"]');
  }

  // The id of the selected item, kept so the selection survives the swap of a decided row.
  let selectedId = null;

  function mark(item) {
    selectedId = item.id;
    for (const other of items()) {
      other.setAttribute("aria-selected", other === item ? "true" : "false");
    }
  }

  function select(item) {
    if (!item) {
      return;
    }
    mark(item);
    item.focus({ preventScroll: true });
    item.scrollIntoView({ block: "nearest" });
  }

  function move(step) {
    const all = items();
    if (all.length === 0) {
      return;
    }
    const index = all.indexOf(selectedItem());
    if (index === -1) {
      select(all[step > 0 ? 0 : all.length - 1]);
      return;
    }
    const next = Math.min(Math.max(index + step, 0), all.length - 1);
    select(all[next]);
  }

  function clickAction(item, action) {
    const button = item && item.querySelector('[data-action="' + action + '"]:not([disabled])');
    if (button) {
      button.click();
    }
    return Boolean(button);
  }

  function reviseForm(item) {
    return item ? item.querySelector(".revise-form") : null;
  }

  function openRevise(item) {
    const form = reviseForm(item);
    if (!form) {
      return false;
    }
    form.hidden = false;
    const toggle = item.querySelector('[data-action="revise"]');
    if (toggle) {
      toggle.setAttribute("aria-expanded", "true");
    }
    const field = form.querySelector("input:not([type=hidden]), select, textarea");
    if (field) {
      field.focus();
      // focus() leaves the caret before the prefilled value. With the value selected, typing
      // replaces it, and End moves the caret behind it for an edit.
      if (field instanceof HTMLInputElement || field instanceof HTMLTextAreaElement) {
        field.select();
      }
    }
    return true;
  }

  function closeRevise(item) {
    const form = reviseForm(item);
    if (!form || form.hidden) {
      return false;
    }
    form.hidden = true;
    const toggle = item.querySelector('[data-action="revise"]');
    if (toggle) {
      toggle.setAttribute("aria-expanded", "false");
    }
    select(item);
    return true;
  }

  // Browsers submit a form on Enter in a text input, but not in a <select>, which the
  // carrier-code revise form has. requestSubmit fires the submit event, on which htmx sends
  // the request.
  function submitFromSelect(target) {
    if (!(target instanceof HTMLSelectElement)) {
      return false;
    }
    const form = target.closest(".revise-form");
    if (!form || form.hidden) {
      return false;
    }
    form.requestSubmit();
    return true;
  }

  function isTyping(target) {
    if (!(target instanceof HTMLElement)) {
      return false;
    }
    if (target.isContentEditable) {
      return true;
    }
    const tag = target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") {
      return true;
    }
    if (tag !== "INPUT") {
      return false;
    }
    const nonText = ["button", "checkbox", "radio", "submit", "reset"];
    return !nonText.includes((target.type || "text").toLowerCase());
  }

  function itemOf(element) {
    return element instanceof Element ? element.closest(ITEM_SELECTOR) : null;
  }

  function onKeyDown(event) {
    if (event.ctrlKey || event.altKey || event.metaKey) {
      return;
    }
    if (event.key === "Escape") {
      // Escape works while typing too: it is how the keyboard leaves the revise form.
      const item = itemOf(event.target) || selectedItem();
      if (closeRevise(item)) {
        event.preventDefault();
      }
      return;
    }
    if (event.key === "Enter" && submitFromSelect(event.target)) {
      event.preventDefault();
      return;
    }
    if (isTyping(event.target)) {
      return;
    }

    const item = itemOf(event.target) || selectedItem();
    let handled = true;
    switch (event.key) {
      case "j":
        move(1);
        break;
      case "k":
        move(-1);
        break;
      case "a":
        handled = clickAction(item, "accept");
        break;
      case "r":
        handled = clickAction(item, "reject");
        break;
      case "e":
        handled = openRevise(item);
        break;
      default:
        handled = false;
    }
    if (handled) {
      event.preventDefault();
    }
  }

  function onClick(event) {
    const toggle = event.target instanceof Element && event.target.closest('[data-action="revise"]');
    if (!toggle) {
      return;
    }
    const item = itemOf(toggle);
    const form = reviseForm(item);
    if (form && form.hidden) {
      openRevise(item);
    } else {
      closeRevise(item);
    }
  }

  function formatMinutes(minutes) {
    if (minutes < 60) {
      return minutes + " min";
    }
    const hours = Math.floor(minutes / 60);
    const rest = minutes % 60;
    return rest ? hours + " h " + rest + " min" : hours + " h";
  }

  function countdownText(dueAt, now) {
    const minutes = Math.round((dueAt - now) / 60000);
    if (minutes >= 0) {
      return formatMinutes(minutes) + " left";
    }
    return "overdue " + formatMinutes(-minutes);
  }

  function updateCountdowns() {
    const now = Date.now();
    for (const element of document.querySelectorAll("time.countdown[datetime]")) {
      const dueAt = Date.parse(element.getAttribute("datetime"));
      if (Number.isNaN(dueAt)) {
        continue;
      }
      element.textContent = countdownText(dueAt, now);
      element.classList.toggle("overdue", dueAt < now);
    }
  }

  function prepareItems() {
    for (const item of items()) {
      if (!item.hasAttribute("tabindex")) {
        item.setAttribute("tabindex", "-1");
      }
      if (!item.hasAttribute("aria-selected")) {
        item.setAttribute("aria-selected", "false");
      }
    }
  }

  function onAfterSettle() {
    prepareItems();
    updateCountdowns();

    // A decision replaces the row, and the focused button goes with it: select the new row.
    const item = selectedId ? document.getElementById(selectedId) : null;
    if (!item) {
      return;
    }
    const focusLost = !document.activeElement || document.activeElement === document.body;
    if (focusLost) {
      select(item);
    } else {
      item.setAttribute("aria-selected", "true");
    }
  }

  function start() {
    prepareItems();
    updateCountdowns();
    // A page of one item (the item page) selects it, so a / r / e work without j first.
    if (document.querySelector(".items[data-select-on-load]")) {
      select(items()[0]);
    }
    setInterval(updateCountdowns, COUNTDOWN_INTERVAL_MS);
  }

  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("click", onClick);
  document.addEventListener("htmx:afterSettle", onAfterSettle);
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
