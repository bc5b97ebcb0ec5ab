/* Small form behaviours, kept out of the pages: the Content-Security-Policy allows no inline script
 * or event-handler attribute (SYS-07).
 *
 * data-autosubmit on a <select>: choosing an option submits its form (a location picker).
 */
(function () {
  "use strict";
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.requestSubmit();
    }
  });
})();
