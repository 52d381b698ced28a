// Create or update the ONE pull-request comment that carries a stack's `servekit diff`.
//
// Used from actions/github-script by preview.yml (pull requests from this repository) and by
// preview-comment.yml (pull requests from forks). The comment is found by a hidden marker,
// `<!-- servekit-diff:<stack> -->`, which `servekit diff --markdown` writes on its first line, among
// comments written by a bot; every page of comments is searched (a long PR has more than one page).
// An unchanged stack updates an existing comment ("unchanged") but never creates a new one, so a PR
// that touches one stack does not collect a comment for every stack. Extra copies (e.g. from two
// runs racing) are deleted. The body is data: it is never evaluated, only posted.
'use strict';

const MAX_BODY = 65000; // GitHub refuses comments over 65,536 characters
const UNCHANGED = '<!-- servekit-diff-status:unchanged -->';
const STACK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;

function marker(stack) {
  return `<!-- servekit-diff:${stack} -->`;
}

async function upsertComment({ github, core, owner, repo, issueNumber, stack, body }) {
  if (!STACK_NAME.test(stack)) throw new Error(`not a stack name: ${JSON.stringify(stack)}`);
  if (!Number.isInteger(issueNumber) || issueNumber <= 0) throw new Error(`not a PR number: ${issueNumber}`);
  const mark = marker(stack);
  let text = body.includes(mark) ? body : `${mark}\n${body}`;
  if (text.length > MAX_BODY) {
    text = `${text.slice(0, MAX_BODY - 120)}\n\n_(comment truncated at ${MAX_BODY} characters; the run summary has it all)_\n`;
  }
  const comments = await github.paginate(github.rest.issues.listComments, {
    owner, repo, issue_number: issueNumber, per_page: 100,
  });
  const ours = comments.filter((c) => c.user && c.user.type === 'Bot' && (c.body || '').includes(mark));
  if (ours.length > 0) {
    const [keep, ...extra] = ours;
    await github.rest.issues.updateComment({ owner, repo, comment_id: keep.id, body: text });
    for (const c of extra) await github.rest.issues.deleteComment({ owner, repo, comment_id: c.id });
    core.info(`updated comment ${keep.id} for stack ${stack}` + (extra.length ? ` (deleted ${extra.length} copies)` : ''));
    return { action: 'updated', id: keep.id };
  }
  if (text.includes(UNCHANGED)) {
    core.info(`stack ${stack} is unchanged and has no comment yet: nothing posted`);
    return { action: 'skipped' };
  }
  const created = await github.rest.issues.createComment({ owner, repo, issue_number: issueNumber, body: text });
  core.info(`created comment ${created.data.id} for stack ${stack}`);
  return { action: 'created', id: created.data.id };
}

module.exports = upsertComment;
module.exports.marker = marker;
module.exports.MAX_BODY = MAX_BODY;
module.exports.UNCHANGED = UNCHANGED;
