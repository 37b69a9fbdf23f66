/*
 * Submit a form when one of its controls marked data-autosubmit changes, so filter
 * checkboxes apply at once. An inline onchange handler would be blocked by the
 * Content-Security-Policy; pages without JavaScript show a submit button instead.
 */
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    const control = event.target;
    if (control instanceof Element && control.matches("[data-autosubmit]") && control.form) {
      control.form.requestSubmit();
    }
  });
})();
