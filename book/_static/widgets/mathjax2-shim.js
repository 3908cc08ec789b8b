// ipywidgets' embed manager (html-manager 1.x) typesets widget labels through the MathJax 2 API,
// `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`, and the site loads MathJax 3, which has no
// Hub: without this, a page with both math and a widget logs a TypeError. Give MathJax 3 a Hub whose
// Queue typesets the element the MathJax 3 way. DOMContentLoaded comes after the deferred MathJax
// script has run and before the manager renders the widgets on `load`.
document.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || !mj.version || mj.Hub) return; // no MathJax 3 on this page
  mj.Hub = {
    Queue: function () {
      Array.prototype.forEach.call(arguments, function (job) {
        if (Array.isArray(job) && job[0] === "Typeset" && job[2]) {
          mj.startup.promise.then(function () {
            return mj.typesetPromise([job[2]]);
          });
        }
      });
    },
  };
});
