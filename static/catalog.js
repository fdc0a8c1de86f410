// The agent catalog: categories, their agents and the models on offer. The
// user picks one agent (a radio group, so arrow keys move between agents).

import { get, postJson } from './api.js';
import { $, el } from './dom.js';

let categories = [];
let defaultModel = null;
let lastSelectedCategory = null;

/** Loads /categories and /models and draws the picker. */
export async function loadCatalog() {
  const [catalog, models] = await Promise.all([get('/categories'), get('/models')]);
  categories = catalog.categories || [];
  defaultModel = models.default_model || null;
  drawCatalog();
  drawModels(models.models || []);
}

function drawCatalog() {
  const box = $('catalog');
  box.replaceChildren();
  if (categories.length === 0) {
    box.append(el('p', { className: 'muted' }, 'No agents are configured on this server.'));
    return;
  }
  for (const category of categories) {
    box.append(categoryGroup(category));
  }
  // Start on the first category's default agent, so one click starts a conversation.
  const first = box.querySelector('input[data-default="true"]') || box.querySelector('input');
  if (first) first.checked = true;
  updateModelHint();
}

function categoryGroup(category) {
  const group = el('fieldset', { className: 'category' },
    el('legend', {}, category.title || category.category),
    category.description ? el('p', { className: 'muted category-description' }, category.description) : null);
  for (const agent of category.agents || []) {
    const id = `agent-${agent.assistant_id}`;
    const input = el('input', {
      type: 'radio',
      name: 'agent',
      id,
      value: agent.assistant_id,
      dataset: {
        category: category.category,
        agentName: agent.agent_name,
        defaultModel: agent.default_model || '',
        default: agent.default ? 'true' : 'false',
      },
      onChange: () => {
        updateModelHint();
        rememberCategory(category.category);
      },
    });
    group.append(el('div', { className: 'agent' },
      input,
      el('label', { for: id },
        el('span', { className: 'agent-name' }, agent.agent_name),
        agent.default ? el('span', { className: 'muted' }, ' (default)') : null,
        el('span', { className: 'agent-description' }, agent.description || ''))));
  }
  return group;
}

function drawModels(models) {
  const select = $('model-select');
  select.replaceChildren(el('option', { value: '' }, "The agent's default model"));
  for (const name of models) {
    select.append(el('option', { value: name }, name === defaultModel ? `${name} (server default)` : name));
  }
  updateModelHint();
}

// The first option names the chosen agent's default model, so the choice is plain.
function updateModelHint() {
  const agent = selectedAgent();
  const first = $('model-select').options[0];
  if (!first) return;
  const model = agent?.defaultModel || defaultModel;
  first.textContent = model ? `The agent's default (${model})` : "The agent's default model";
}

function selectedAgent() {
  const input = $('catalog').querySelector('input[name="agent"]:checked');
  if (!input) return null;
  return {
    assistantId: input.value,
    category: input.dataset.category,
    agentName: input.dataset.agentName,
    defaultModel: input.dataset.defaultModel,
  };
}

// The server remembers the user's category (POST /select); a failure here
// changes nothing for this page, so it is not shown.
function rememberCategory(category) {
  if (category === lastSelectedCategory) return;
  lastSelectedCategory = category;
  postJson('/select', { category }).catch(() => {});
}

/** Starts a conversation with the picked agent; returns the server's answer. */
export async function startConversation() {
  const agent = selectedAgent();
  if (!agent) throw new Error('Pick an agent first.');
  const body = {
    category: agent.category,
    assistant_id: agent.assistantId,
    agent_name: agent.agentName,
  };
  const model = $('model-select').value;
  if (model) body.llm_model = model;
  return postJson('/start_conversation', body);
}

/** Finds a category's title, for headings. */
export function categoryTitle(category) {
  return categories.find((c) => c.category === category)?.title || category;
}
