# Ruby mysql2 client of the compatibility suite; prepared runs use
# Mysql2::Statement (server-side prepared statements).
# Usage: ruby compat.rb RUNS.json HOST PORT USER PASSWORD DB (see ../README.md)
require 'bigdecimal'
require 'date'
require 'json'
require 'mysql2'

path, host, port, user, password, db = ARGV
runs = JSON.parse(File.read(path, encoding: 'UTF-8'))['runs']
$stdout.sync = true

# The value as MySQL's text protocol shows it, as bytes. Text results are
# read uncast (the server's text as it is); prepared results come decoded
# by the binary protocol. mysql2 gives no column types: a TIME is a Time on
# 2000-01-01.
def canon(v)
  s = case v
      when nil then return nil
      when Integer then v.to_s
      when Float then v == v.floor && v.abs < 1e15 ? v.to_i.to_s : v.to_s
      when BigDecimal then v.to_s('F').sub(/\.0\z/, '')
      when DateTime, Time
        if v.year == 2000 && v.month == 1 && v.day == 1
          v.strftime('%H:%M:%S')
        else
          # years past 2037 come as DateTime, which has no usec
          frac = v.is_a?(DateTime) ? v.sec_fraction : v.subsec
          v.strftime(frac.zero? ? '%Y-%m-%d %H:%M:%S' : '%Y-%m-%d %H:%M:%S.%6N')
        end
      when Date then v.strftime('%Y-%m-%d')
      when true then '1'
      when false then '0'
      else v.to_s
      end
  s.b
end

def param(p)
  case p['t']
  when 'null' then nil
  when 'int' then Integer(p['v'])
  when 'double' then Float(p['v'])
  when 'bytes' then [p['v']].pack('H*') # ASCII-8BIT: sent as bytes
  else p['v']
  end
end

def err(e)
  { 'code' => e.respond_to?(:error_number) ? e.error_number.to_i : -1,
    'state' => e.respond_to?(:sql_state) ? e.sql_state.to_s : '',
    'msg' => "#{e.respond_to?(:error_number) ? '' : "#{e.class}: "}#{e.message}" }
end

def emit(o)
  puts JSON.generate(o)
end

conns = {}
runs.each do |run|
  key = run['nodb'] ? '' : db
  conns[key] ||= Mysql2::Client.new(host: host, port: Integer(port), username: user, password: password,
                                    database: key.empty? ? nil : key, encoding: 'utf8mb4')
  c = conns[key]
  run['steps'].each_with_index do |step, si|
    if step['tx']
      o = { 'run' => run['id'], 'step' => si, 'exec' => 0 }
      begin
        # mysql2 has no transaction API: the statements Rails sends
        c.query({ 'begin' => 'BEGIN', 'commit' => 'COMMIT', 'rollback' => 'ROLLBACK' }.fetch(step['tx']))
      rescue StandardError => e
        o['error'] = err(e)
      end
      emit(o)
      next
    end
    stmt = nil
    step['execs'].each_with_index do |ex, ei|
      o = { 'run' => run['id'], 'step' => si, 'exec' => ei }
      begin
        if run['prep']
          # one prepared statement for all of the step's executions
          stmt ||= c.prepare(ex['sql'])
          res = stmt.execute(*ex['params'].map { |p| param(p) }, as: :array)
          affected = stmt.affected_rows
          last = stmt.last_id
        else
          res = c.query(ex['sql'], as: :array, cast: false)
          affected = c.affected_rows
          last = c.last_id
        end
        if res.nil?
          o['affected'] = affected
          o['insert_id'] = last
        else
          o['cols'] = res.fields
          o['rows'] = res.to_a.map { |row| row.map { |v| (b = canon(v)) && b.unpack1('H*') } }
        end
      rescue StandardError => e
        o['error'] = err(e)
      end
      emit(o)
    end
    stmt&.close
  end
end
