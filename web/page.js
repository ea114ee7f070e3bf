() => {
  // Accessibility repairs of Gradio's own markup, kept as the page changes: a div named with aria-label must
  // have a role (Gradio's empty-value placeholders have none), and a region that scrolls must be reachable
  // with the keyboard (the audio players' waveform scrolls inside their shadow roots).
  const repair = root => {
    root.querySelectorAll("div[aria-label]:not([role])").forEach(div => div.setAttribute("role", "group"));
    root.querySelectorAll("#waveform > div").forEach(host => {
      const scroll = host.shadowRoot && host.shadowRoot.querySelector(".scroll");
      if (scroll && !scroll.hasAttribute("tabindex")) {
        scroll.setAttribute("tabindex", "0");
        scroll.setAttribute("role", "region");
        scroll.setAttribute("aria-label", "Waveform of this take");
      }
    });
  };
  let pending = false;
  new MutationObserver(() => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; repair(document); });
  }).observe(document.body, {subtree: true, childList: true});
  repair(document);
}
