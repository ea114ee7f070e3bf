() => {
  // Accessibility repairs of Gradio's own markup, kept as the page changes: a div named with aria-label must
  // have a role (Gradio's empty-value placeholders have none), and a region that scrolls must be reachable
  // with the keyboard (the audio players' waveform scrolls inside their shadow roots). Roles are given as the
  // nodes arrive (before the page is drawn again); the waveforms, made inside shadow roots, at the next frame.
  const name = root => {
    if (root.matches && root.matches("div[aria-label]:not([role])")) root.setAttribute("role", "group");
    root.querySelectorAll("div[aria-label]:not([role])").forEach(div => div.setAttribute("role", "group"));
  };
  const reachWaveforms = () => {
    document.querySelectorAll("#waveform > div").forEach(host => {
      const scroll = host.shadowRoot && host.shadowRoot.querySelector(".scroll");
      if (scroll && !scroll.hasAttribute("tabindex")) {
        scroll.setAttribute("tabindex", "0");
        scroll.setAttribute("role", "region");
        scroll.setAttribute("aria-label", "Waveform of this take");
      }
    });
  };
  let pending = false;
  new MutationObserver(records => {
    records.forEach(record => record.addedNodes.forEach(node => { if (node.nodeType === 1) name(node); }));
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; reachWaveforms(); });
  }).observe(document.body, {subtree: true, childList: true});
  name(document.body);
  reachWaveforms();
}
